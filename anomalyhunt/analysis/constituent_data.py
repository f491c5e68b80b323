"""Constituent-level truth studies: injected data and test sets, and evaluation against truth labels."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..models.constituents import ConstituentData


def injected_constituents(
    background: ConstituentData, signal: ConstituentData, rows: dict[str, np.ndarray], seed: int = 0
) -> tuple[ConstituentData, ConstituentData]:
    """(data, test) from the row bookkeeping of :class:`anomalyhunt.analysis.injection.InjectedSample`.

    ``background``/``signal`` must hold the same events, in the same order, as the tables given to
    ``inject_signal``. The data are ``data_bkg`` + ``data_sig`` shuffled with ``seed`` (truth stays in the table's
    ``label`` column for bookkeeping only); the test set is ``test_bkg`` + ``test_sig``.
    """
    data = ConstituentData.concat([background.subset(rows["data_bkg"]), signal.subset(rows["data_sig"])], "data")
    data = data.subset(np.random.default_rng(np.random.SeedSequence([int(seed), 0xDA7A])).permutation(len(data)))
    test = ConstituentData.concat([background.subset(rows["test_bkg"]), signal.subset(rows["test_sig"])], "test")
    return data, test


# -- evaluation on truth-labelled events -------------------------------------------------------------------------


def evaluate_scores(y: np.ndarray, score: np.ndarray, min_background: int = 50) -> dict[str, float | None]:
    """The shared metrics (``anomalyhunt.analysis.metrics.summarize``: AUC, 1/eps_B at eps_S = 0.2, SIC, ...)."""
    from .metrics import summarize

    return summarize(np.asarray(y), np.asarray(score, dtype=np.float64), min_background=min_background)


def best_single_feature(
    table: pd.DataFrame, y: np.ndarray, columns: Sequence[str] | None = None
) -> tuple[str, dict[str, float | None]]:
    """The single feature-table column with the largest AUC, either sign (``-name`` when lower is more signal-like).

    A reference for constituent methods; it looks at the truth, so it is an upper bound for a one-cut search, not a
    search itself.
    """
    from .metrics import auc

    cols = columns or ("mj1", "mj2", "tau21_j1", "tau21_j2", "tau32_j1", "tau32_j2", "n_const_j1", "n_const_j2")
    best: tuple[float, str, np.ndarray] | None = None
    for col in cols:
        v = table[col].to_numpy(np.float64)
        for sign, name in ((1.0, col), (-1.0, f"-{col}")):
            a = auc(y, sign * v)
            if best is None or a > best[0]:
                best = (a, name, sign * v)
    assert best is not None
    return best[1], evaluate_scores(y, best[2])


def mjj_sculpting(
    mjj: np.ndarray, selected: np.ndarray, bins: int | np.ndarray = 20
) -> dict[str, float]:
    """Does a selection change the shape of the background m_jj distribution?

    Two-sample Kolmogorov-Smirnov test of the selected against the rejected events (``p_value`` small: the selection
    sculpts m_jj) and the chi2/ndf of the selected fraction per m_jj bin against a constant.
    """
    from scipy.stats import ks_2samp

    mjj = np.asarray(mjj, dtype=np.float64)
    selected = np.asarray(selected, dtype=bool)
    if selected.all() or not selected.any():
        raise ValueError("mjj_sculpting needs both selected and rejected events")
    ks = ks_2samp(mjj[selected], mjj[~selected])
    edges = np.quantile(mjj, np.linspace(0, 1, bins + 1)) if np.isscalar(bins) else np.asarray(bins)
    idx = np.clip(np.digitize(mjj, edges[1:-1]), 0, len(edges) - 2)
    n_all = np.bincount(idx, minlength=len(edges) - 1).astype(float)
    n_sel = np.bincount(idx, weights=selected.astype(float), minlength=len(edges) - 1)
    ok = n_all > 0
    frac = selected.mean()
    var = n_all[ok] * frac * (1 - frac)
    chi2 = float(((n_sel[ok] - frac * n_all[ok]) ** 2 / var).sum())
    ndf = max(int(ok.sum()) - 1, 1)
    return {"ks_statistic": float(ks.statistic), "p_value": float(ks.pvalue), "chi2_ndf": chi2 / ndf}
