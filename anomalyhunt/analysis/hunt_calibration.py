"""Does a hunt's local significance hold under background only? Background-only hunts on disjoint subsamples
(and, with signal injected, the sensitivity on the same machinery).

Every background-only sample goes through the whole hunt (generator and classifiers retrained, cuts, fits, the direct
estimate); its local Z per window, cut and significance definition is one value. Three definitions are compared on
the same samples: the dijet fit with the Gaussian's mean floating in the SR (``z``), fixed at the SR centre
(``z_fixed``), and the direct background estimate (``z_direct``, closure from the other windows). A calibrated one
has, per (window, cut), a standard deviation near 1 and a mean near 0; the study pools the within-window spread.

Finished (sample, method) hunts are appended to ``values.jsonl`` in the output directory and skipped by a re-run
(a run stopped anywhere resumes where it stopped); a study with other settings in the same directory is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .hunt_toys import hunt_once, subsamples

#: The significance definitions compared (columns of the hunt table).
STATISTICS = ("z", "z_fixed", "z_direct")


def calibration_values(
    bkg: pd.DataFrame, sig: pd.DataFrame, out: str | Path, *, methods: Sequence[str], n_samples: int,
    fraction: float, windows: Sequence[tuple[float, float]], features: Sequence[str], seed: int = 0,
    n_signal: int = 0, settings: dict[str, Any] | None = None, progress: bool = True, **hunt_options: Any,
) -> pd.DataFrame:
    """Run (or resume) the hunts; one row per sample, method, window and cut. ``n_signal`` > 0 injects that many
    events of ``sig`` into every sample (a sensitivity study on the same machinery)."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**(settings or {}), "fraction": fraction, "windows": [list(w) for w in windows],
                "features": list(features), "seed": seed, "n_events": len(bkg), "n_signal": n_signal}  # fmt: skip
    stamp = out / "study.json"
    if stamp.exists() and json.loads(stamp.read_text()) != json.loads(json.dumps(settings, default=str)):
        raise ConfigError(f"{out}: holds a calibration study with other settings (see study.json); use another --out")
    stamp.write_text(json.dumps(settings, indent=2, default=str))
    values = out / "values.jsonl"
    done = {(r["sample"], r["method"]) for r in read_values(values)}
    rows = subsamples(len(bkg), fraction, n_samples, seed)
    todo = [(i, m) for i in range(n_samples) for m in methods if (i, m) not in done]
    if done:
        print(f"resuming: {len(done)} (sample, method) hunts already in {values}, {len(todo)} to run")
    desc = f"hunts with {n_signal} signal events" if n_signal else "background-only hunts"
    for i, method in tqdm(todo, desc=desc, unit="hunt", disable=not progress):
        sample = bkg.iloc[rows[i]].reset_index(drop=True)
        results = hunt_once(sample, sig, n_signal, seed + i, method=method, windows=windows, features=features,
                            **hunt_options)  # fmt: skip
        with values.open("a") as f:
            for r in results:
                for row in r.rows():
                    if row["efficiency"] < 1.0:
                        keep = {k: row[k] for k in ("method", "sr_lo", "sr_hi", "efficiency", *STATISTICS)}
                        f.write(json.dumps({"sample": i, **keep}, default=float) + "\n")
    return pd.DataFrame([r for r in read_values(values) if r["sample"] < n_samples and r["method"] in methods])


def read_values(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
