"""Performance of an anomaly score on a truth-labelled test set: ROC, SIC = eps_S / sqrt(eps_B), AUC, rejection.

The significance improvement characteristic (SIC) says by how much a cut on the score multiplies S/sqrt(B). At very
tight cuts it is dominated by the few background test events that survive, so :func:`max_sic` only considers cuts
that keep at least ``min_background`` background test events.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

#: SIC at eps_B = 1e-3 needs enough background to estimate eps_B = 1e-3 with 50 events.
MIN_BACKGROUND_FOR_1E3 = 50_000


def _check(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).astype(np.int64).ravel()
    score = np.asarray(score, dtype=np.float64).ravel()
    if len(y) != len(score):
        raise ValueError(f"{len(y)} labels but {len(score)} scores")
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("metrics need both signal (1) and background (0) test events")
    if not np.isfinite(score).all():
        raise ValueError("non-finite scores")
    return y, score


def roc(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eps_S, eps_B, n_B)`` for every distinct cut ``score >= t``, tightest first; ``n_B`` is the number of
    background test events kept. Starts at (0, 0, 0)."""
    from sklearn.metrics import roc_curve

    y, score = _check(y, score)
    eps_b, eps_s, _ = roc_curve(y, score, drop_intermediate=False)
    n_b = np.rint(eps_b * (y == 0).sum()).astype(np.int64)
    return eps_s, eps_b, n_b


def sic_curve(
    y: np.ndarray, score: np.ndarray, min_background: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``(eps_S, SIC)`` over cuts that keep at least ``max(min_background, 1)`` background test events."""
    eps_s, eps_b, n_b = roc(y, score)
    keep = n_b >= max(int(min_background), 1)
    return eps_s[keep], eps_s[keep] / np.sqrt(eps_b[keep])


def max_sic(y: np.ndarray, score: np.ndarray, min_background: int = 50) -> float:
    """Largest SIC over cuts keeping at least ``min_background`` background test events (nan if none does)."""
    _, sic = sic_curve(y, score, min_background)
    return float(sic.max()) if len(sic) else float("nan")


def background_efficiency_at(y: np.ndarray, score: np.ndarray, eps_s: float) -> float:
    """eps_B of the tightest cut with signal efficiency >= ``eps_s`` (linear between neighbouring cuts)."""
    s, b, _ = roc(y, score)
    # Several cuts can share one eps_S (background-only steps); the tightest of them has the smallest eps_B.
    us, first = np.unique(s, return_index=True)
    return float(np.interp(eps_s, us, b[first]))


def signal_efficiency_at(y: np.ndarray, score: np.ndarray, eps_b: float) -> float:
    """eps_S at background efficiency ``eps_b`` (linear between neighbouring cuts)."""
    s, b, _ = roc(y, score)
    # Several cuts can share one eps_B (signal-only steps); take the best eps_S at each distinct eps_B.
    ub, last = np.unique(b[::-1], return_index=True)
    return float(np.interp(eps_b, ub, s[::-1][last]))


def _background_kept(y: np.ndarray, eps_b: float) -> float:
    return eps_b * int((np.asarray(y) == 0).sum())


def sic_at_signal_efficiency(
    y: np.ndarray, score: np.ndarray, eps_s: float, min_background: int = 1
) -> float | None:
    """SIC at signal efficiency ``eps_s``; ``None`` when that cut keeps fewer than ``min_background`` (at least
    one) background test events: the SIC would rest on a handful of events, or be infinite."""
    b = background_efficiency_at(y, score, eps_s)
    if b <= 0 or _background_kept(y, b) < max(min_background, 1) - 1e-9:
        return None
    return float(eps_s / np.sqrt(b))


def sic_lower_bound_at_signal_efficiency(y: np.ndarray, score: np.ndarray, eps_s: float, cl: float = 0.84) -> float:
    """A one-sided ``cl`` lower bound on the SIC at signal efficiency ``eps_s``, defined however few background test
    events the cut keeps: eps_B from the Poisson upper limit on their number (k kept: chi2.ppf(cl, 2k + 2) / 2 events;
    1.8 for none). Where the SIC itself is undefined (tight cuts of a good classifier), this still ranks methods."""
    from scipy.stats import chi2

    n_b = int((np.asarray(y) == 0).sum())
    kept = _background_kept(y, background_efficiency_at(y, score, eps_s))
    upper = 0.5 * chi2.ppf(cl, 2 * np.floor(kept + 1e-9) + 2)
    return float(eps_s / np.sqrt(min(upper, n_b) / n_b))


def sic_at_background_efficiency(
    y: np.ndarray, score: np.ndarray, eps_b: float = 1e-3, min_test_background: int = MIN_BACKGROUND_FOR_1E3
) -> float | None:
    """SIC at background efficiency ``eps_b``; ``None`` when the test set has fewer than ``min_test_background``
    background events (eps_B would rest on a handful of events)."""
    y = np.asarray(y)
    if (y == 0).sum() < min_test_background:
        return None
    return float(signal_efficiency_at(y, score, eps_b) / np.sqrt(eps_b))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (0.5: no separation)."""
    from sklearn.metrics import roc_auc_score

    y, score = _check(y, score)
    return float(roc_auc_score(y, score))


def rejection_at(y: np.ndarray, score: np.ndarray, eps_s: float = 0.2, min_background: int = 1) -> float | None:
    """Background rejection 1/eps_B at signal efficiency ``eps_s`` (``None`` when fewer than ``min_background``,
    at least one, background test events survive)."""
    b = background_efficiency_at(y, score, eps_s)
    if b <= 0 or _background_kept(y, b) < max(min_background, 1) - 1e-9:
        return None
    return float(1.0 / b)


def summarize(y: np.ndarray, score: np.ndarray, min_background: int = 50) -> dict[str, float | None]:
    """All scalar metrics of one test-set scoring; cuts keeping fewer than ``min_background`` background test events
    give ``None`` (or are skipped, for the maximum SIC)."""
    return {
        "max_sic": max_sic(y, score, min_background),
        "sic_at_0.2": sic_at_signal_efficiency(y, score, 0.2, min_background),
        "sic_at_0.2_lower": sic_lower_bound_at_signal_efficiency(y, score, 0.2),
        "sic_at_0.5": sic_at_signal_efficiency(y, score, 0.5, min_background),
        "sic_at_1e-3": sic_at_background_efficiency(y, score, 1e-3),
        "auc": auc(y, score),
        "rejection_at_0.2": rejection_at(y, score, 0.2, min_background),
    }


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Median and 16th/84th percentiles over seeds (``None``/nan entries ignored)."""
    vals = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if len(vals) == 0:
        return {"median": None, "p16": None, "p84": None, "n": 0}
    p16, med, p84 = np.percentile(vals, [16, 50, 84])
    return {"median": float(med), "p16": float(p16), "p84": float(p84), "n": int(len(vals))}


def aggregate(
    results: list[dict[str, Any]],
    keys: tuple[str, ...] = ("max_sic", "sic_at_0.2", "sic_at_0.5", "sic_at_1e-3", "auc", "template_auc"),
    group_by: tuple[str, ...] = ("method", "sr", "injection"),
) -> list[dict[str, Any]]:
    """Group results (one per seed) by ``group_by`` and give each metric's :func:`spread` over the seeds."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(tuple(_hashable(r.get(g)) for g in group_by), []).append(r)
    out = []
    for key, rs in groups.items():
        row: dict[str, Any] = dict(zip(group_by, (rs[0].get(g) for g in group_by)))
        row["seeds"] = [r.get("seed") for r in rs]
        for k in keys:
            row[k] = spread(r.get(k) for r in rs)
        out.append(row)
    return out


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v
