"""Does a hunt's local significance hold under background only? Background-only hunts on disjoint subsamples or on
Poisson replicas of the full sample (:mod:`~anomalyhunt.analysis.replicas`), and, with signal injected, the
sensitivity on the same machinery.

Every background-only sample goes through the whole hunt (generator and classifiers retrained, cuts, fits, the direct
estimate); its local Z per window, cut and significance definition is one value. Three definitions are compared on
the same samples: the dijet fit with the Gaussian's mean floating in the SR (``z``), fixed at the SR centre
(``z_fixed``), and the direct background estimate (``z_direct``, closure from the other windows). A calibrated one
has, per (window, cut), a standard deviation near 1 and a mean near 0; the study pools the within-window spread.

Finished (sample, method) hunts are recorded in the output directory's task log (:class:`~anomalyhunt.resume.TaskLog`)
and skipped by a re-run (a run stopped anywhere resumes where it stopped); a study with other settings in the same
directory is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .hunt_toys import hunt_once, subsamples

#: The significance definitions compared (columns of the hunt table).
STATISTICS = ("z", "z_fixed", "z_direct")


def calibration_values(
    bkg: pd.DataFrame, sig: pd.DataFrame, out: str | Path, *, methods: Sequence[str], n_samples: int,
    fraction: float, windows: Sequence[tuple[float, float]], features: Sequence[str], seed: int = 0,
    n_signal: int = 0, settings: dict[str, Any] | None = None, progress: bool = True, replicas: bool = False,
    **hunt_options: Any,
) -> pd.DataFrame:
    """Run (or resume) the hunts; one row per sample, method, window and cut. ``n_signal`` > 0 injects that many
    events of ``sig`` into every sample (a sensitivity study on the same machinery). ``replicas``: every sample is
    the whole of ``bkg`` (``fraction`` must be 1) with its own Poisson(1) event counts, one split into data and
    held-out parts for all, and its own training seeds."""
    from tqdm.auto import tqdm

    from ..resume import TaskLog

    from ..errors import ConfigError
    from .replicas import replica_weights

    if replicas and fraction != 1:
        raise ConfigError(f"Poisson replicas are of the full sample: fraction must be 1, not {fraction:g}")
    settings = {**(settings or {}), "fraction": fraction, "windows": [list(w) for w in windows],
                "features": list(features), "seed": seed, "n_events": len(bkg), "n_signal": n_signal,
                **({"replicas": True} if replicas else {})}  # fmt: skip
    log = TaskLog(out, settings, "calibration study")
    rows = subsamples(len(bkg), fraction, n_samples, seed)
    todo = [(i, m) for i in range(n_samples) for m in methods if task_name(i, m) not in log.done]
    if log.done:
        print(f"resuming: {len(log.done)} (sample, method) hunts already in {log.path}, {len(todo)} to run")
    desc = f"hunts with {n_signal} signal events" if n_signal else "background-only hunts"
    for i, method in tqdm(todo, desc=desc, unit="hunt", disable=not progress):
        if replicas:
            results = hunt_once(bkg, sig, n_signal, seed + i, method=method, windows=windows, features=features,
                                weights=replica_weights(len(bkg), seed, i), split_seed=seed, **hunt_options)
        else:
            sample = bkg.iloc[rows[i]].reset_index(drop=True)
            results = hunt_once(sample, sig, n_signal, seed + i, method=method, windows=windows, features=features,
                                **hunt_options)  # fmt: skip
        log.record(task_name(i, method), [{"sample": i, **value_row(row)} for r in results for row in r.rows()
                                          if row["efficiency"] < 1.0])  # fmt: skip
    return pd.DataFrame([r for r in log.rows() if r["sample"] < n_samples and r["method"] in methods])


def task_name(sample: int, method: str) -> str:
    return f"{sample}/{method}"


def value_row(row: dict[str, Any]) -> dict[str, Any]:
    """What a study keeps of a hunt-table row: the window, the cut and every local Z definition."""
    return {k: row[k] for k in ("method", "sr_lo", "sr_hi", "efficiency", *STATISTICS)}


def sample_max_z(values: pd.DataFrame, method: str, statistic: str) -> pd.Series:
    """Per background-only sample: the largest local Z of ``method`` over the windows and cuts (the null's max Z)."""
    v = values[values.method == method].dropna(subset=[statistic])
    return v.groupby("sample")[statistic].max()


def global_p_values(values: pd.DataFrame, method: str, statistic: str, per_block: int) -> tuple[np.ndarray, float]:
    """Each sample's global p-value against the max-Z distribution of the samples of the *other* blocks (never its
    own: those share no events with it but were drawn with it), and the KS p-value of their uniformity."""
    from scipy import stats

    mz = sample_max_z(values, method, statistic)
    block = mz.index.to_numpy() // per_block
    p = []
    for obs, b in zip(mz.to_numpy(), block):
        null = mz.to_numpy()[block != b]
        if len(null):
            p.append((np.sum(null >= obs) + 1) / (len(null) + 1))
    p = np.asarray(p)
    return p, float(stats.kstest(p, "uniform").pvalue) if len(p) > 1 else float("nan")


def independent_global_p(
    hunt_dirs: Sequence[str | Path], method: str, statistic: str = "z_fixed", seed: int = 0
) -> pd.DataFrame:
    """The global p-values of hunts of independent tables, each calibrated by its own null pseudo-experiments
    (``hunt --null-toys N``). Per hunt: the conservative count (k + 1) / (n + 1) the hunt reports (k toys with a
    largest local Z >= the observed one) and a randomized one, (k' + U (t + 1)) / (n + 1) with k' toys above it, t
    ties and U uniform: exactly uniform under background only when the toys are exchangeable with the data, so a
    KS test of many hunts is not biased by the count's steps of 1 / (n + 1)."""
    import json

    from .hunt import NullStudy

    rng = np.random.default_rng(seed)
    rows = []
    for d in map(Path, hunt_dirs):
        hunt = pd.read_csv(d / "hunt.csv")
        cut = hunt[(hunt.method == method) & (hunt.efficiency < 1.0)]
        observed = float(cut[statistic].max())
        null = sample_max_z(NullStudy.load(d / "null-toys").values, method, statistic).to_numpy()
        above, ties = int(np.sum(null > observed)), int(np.sum(null == observed))
        n = len(null)
        rows.append({
            "hunt": str(d), "events": json.loads((d / "config.json").read_text())["config"]["inputs"][0]["rows"],
            "max_z": observed, "n_null": n, "p_count": (above + ties + 1) / (n + 1),
            "p_randomized": (above + rng.uniform() * (ties + 1)) / (n + 1),
        })  # fmt: skip
    return pd.DataFrame(rows)


def sensitivity(values: pd.DataFrame, statistic: str = "z_fixed") -> pd.DataFrame:
    """Per method and window: the median over samples of the largest local Z over the cuts, and how many samples
    reach 3."""
    best = values.groupby(["method", "sr_lo", "sr_hi", "sample"])[statistic].max().reset_index()
    return best.groupby(["method", "sr_lo", "sr_hi"], sort=False)[statistic].agg(
        median="median", n_samples="size", n_above_3=lambda z: int((z >= 3).sum())
    ).reset_index()


def summarize_calibration(values: pd.DataFrame, per_block: int | None = None) -> pd.DataFrame:
    """Per method and definition: the number of values, the pooled within-(window, cut) standard deviation, the
    range of the (window, cut) means, the largest value, and (given the samples per disjoint block) the median of
    the samples' global p-values and the KS p-value of their uniformity (:func:`global_p_values`)."""
    rows = []
    for method, g in values.groupby("method", sort=False):
        for stat in STATISTICS:
            v = g[["sr_lo", "efficiency", stat]].dropna()
            if v.empty:
                continue
            groups = v.groupby(["sr_lo", "efficiency"])[stat]
            dev2 = float(((v[stat] - groups.transform("mean")) ** 2).sum())
            dof = len(v) - groups.ngroups
            rows.append({
                "method": method, "statistic": stat, "n_values": len(v), "n_groups": groups.ngroups,
                "pooled_sd": float(np.sqrt(dev2 / dof)) if dof > 0 else float("nan"),
                "mean_min": float(groups.mean().min()), "mean_max": float(groups.mean().max()),
                "max": float(v[stat].max()),
            })  # fmt: skip
            if per_block:
                p, ks = global_p_values(g, method, stat, per_block)
                rows[-1] |= {"n_global": len(p), "median_global_p": float(np.median(p)) if len(p) else float("nan"),
                             "ks_p": ks}
    return pd.DataFrame(rows)
