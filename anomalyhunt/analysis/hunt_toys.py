"""Full-pipeline background-only toys for the sliding-window hunt: the look-elsewhere correction that retrains.

Each toy is a background-only pseudo-dataset run through everything the observation went through (signal-free
injection split, template generator, k-fold classifiers, calibrated cuts, dijet fits); its largest local Z over the
windows and cut levels enters the distribution that calibrates the observed largest Z. A finite background sample
cannot give many independent full-size toys, so every toy (and the observation) uses a ``fraction`` of it: toys are
disjoint within each block of ``1 / fraction`` subsamples, and blocks are fresh permutations (toys of different
blocks share about ``fraction`` of their events, which narrows the toy distribution somewhat: a global significance
from them is an upper estimate).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError
from .bumphunt import GlobalSignificance, full_pipeline_toys
from .injection import inject_signal
from .regions import Regions
from .windows import hunt_fit_toys, hunt_windows, local_z


def subsamples(n_events: int, fraction: float, n: int, seed: int) -> list[np.ndarray]:
    """``n`` sorted row selections of ``fraction`` of ``n_events``, disjoint within blocks of ``int(1 / fraction)``."""
    if not 0 < fraction <= 1:
        raise ConfigError(f"toy fraction must be in (0, 1], got {fraction}")
    per_block = max(int(1 / fraction), 1)
    size = int(fraction * n_events)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x70F5]))
    out: list[np.ndarray] = []
    while len(out) < n:
        perm = rng.permutation(n_events)
        out += [np.sort(perm[k * size : (k + 1) * size]) for k in range(per_block)]
    return out[:n]


def hunt_once(bkg: pd.DataFrame, sig: pd.DataFrame, n_signal: int, seed: int, *, method: str,
              windows: Sequence[tuple[float, float]], features: Sequence[str], weights: np.ndarray | None = None,
              split_seed: int | None = None, **hunt_options: Any) -> list:
    """One sliding-window hunt of ``method`` on ``bkg`` with ``n_signal`` events of ``sig`` injected; ``weights``:
    event counts of the ``bkg`` rows (a Poisson replica); ``split_seed`` (default ``seed``) splits the background
    into data and held-out parts, so that replicas of one sample share that split."""
    s = inject_signal(bkg, sig, regions=Regions((2.8, 7.0)), n_signal=n_signal,
                      seed=seed if split_seed is None else split_seed, features=features, test_fraction=0.15,
                      idealized_fraction=0.15, weights=weights)  # fmt: skip
    _, results = hunt_windows(s.x, s.m, windows, [method], x_ideal=s.x_ideal, m_ideal=s.m_ideal, seed=seed,
                              progress=False, w=s.w, w_ideal=s.w_ideal, **hunt_options)  # fmt: skip
    return results


def max_local_z(results: Sequence, significance: str = "fit-fixed") -> float:
    """Largest local Z over the windows and the cut levels (no-cut spectra excluded)."""
    return max(local_z(h, significance) for r in results for eff, h in r.hunts.items() if eff < 1.0)


def pipeline_toys(
    bkg: pd.DataFrame, sig: pd.DataFrame, *, method: str, n_toys: int, fraction: float, n_signal: int,
    windows: Sequence[tuple[float, float]], features: Sequence[str], seed: int = 0, fit_toys: int = 30,
    progress: bool = True, **hunt_options: Any,
) -> dict[str, Any]:
    """Observation (subsample 0, ``n_signal`` injected) and ``n_toys`` background-only full-pipeline toys (the
    following subsamples); returns the observation's local max Z and its global significance both ways."""
    rows = subsamples(len(bkg), fraction, n_toys + 1, seed)
    observed = hunt_once(bkg.iloc[rows[0]].reset_index(drop=True), sig, n_signal, seed, method=method,
                         windows=windows, features=features, **hunt_options)  # fmt: skip
    fit_only = hunt_fit_toys(observed, fit_toys, seed=seed)

    def make_toy(i: int) -> float:  # toy i: subsample i + 1, seeds after the observation's
        toy = bkg.iloc[rows[1 + i]].reset_index(drop=True)
        return max_local_z(hunt_once(toy, sig, 0, seed + 1 + i, method=method, windows=windows, features=features,
                                     **hunt_options))  # fmt: skip

    full = full_pipeline_toys(make_toy, n_toys, max_local_z(observed), seed=0, progress=progress)
    return {"observed": observed, "fit_only": fit_only, "full_pipeline": full}


def describe(g: GlobalSignificance) -> dict[str, Any]:
    """A JSON-ready summary of a global significance."""
    return {"method": g.method, "n_toys": g.n_toys, "observed_max_z": g.observed_max_z, "p_toys": g.p_value,
            "z_toys": g.z, "n_eff_trials": g.n_eff, "p_extrapolated": g.p_extrapolated,
            "z_extrapolated": g.z_extrapolated, "toy_max_z": [float(z) for z in g.toy_max_z],
            "toy_max_z_median": float(np.median(g.toy_max_z))}  # fmt: skip
