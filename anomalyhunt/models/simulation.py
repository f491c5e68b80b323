"""What the simulation-assisted template generators (FETA, SALAD) share: the signal region they leave out of the
data, the simulation's sidebands, and simulation events drawn near requested masses.

The simulation sample itself is a protocol input (:meth:`~anomalyhunt.models.base.TemplateGenerator.set_simulation`);
these helpers register nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["signal_region", "simulation_sidebands", "draw_near"]


def signal_region(sr: Any, m: np.ndarray, name: str) -> tuple[float, float]:
    """The SR ``sr`` (the pipeline sets it), or else the widest empty mass interval between the (sideband) data
    masses ``m``; data events inside it are refused: the generator must not see SR data."""
    if sr is not None:
        lo, hi = float(sr[0]), float(sr[1])
    else:
        s = np.sort(m)
        i = int(np.argmax(np.diff(s)))
        lo, hi = float(s[i]), float(s[i + 1])
    if not lo < hi:
        raise ConfigError(f"{name}: signal region {lo}-{hi} is empty")
    inside = (m > lo) & (m < hi)
    if inside.any():
        raise InputError(f"{name}.fit", f"{int(inside.sum())} data events inside the SR {lo:g}-{hi:g}: {name} trains "
                                        "on the sidebands only")  # fmt: skip
    return lo, hi


def simulation_sidebands(m_sim: np.ndarray, m_data: np.ndarray, sr: tuple[float, float], name: str) -> np.ndarray:
    """Mask of the simulation events in the data's sidebands: outside the SR and within the data's mass range."""
    keep = ((m_sim <= sr[0]) | (m_sim >= sr[1])) & (m_sim >= m_data.min()) & (m_sim <= m_data.max())
    if keep.sum() < 100:
        raise InputError(f"{name} simulation", f"only {int(keep.sum())} simulation events in the sidebands "
                                               f"{m_data.min():g}-{sr[0]:g} and {sr[1]:g}-{m_data.max():g} TeV")
    return keep


def draw_near(pool_m: np.ndarray, m: np.ndarray, rng: np.random.Generator, *, width: float,
              weights: np.ndarray | None = None, min_events: int = 20) -> np.ndarray:
    """For each requested mass in ``m``, the index of a pool event (masses ``pool_m``) in the same mass bin (a fixed
    grid of ``width`` TeV). With ``weights``: drawn with replacement, with probability proportional to them. Without:
    uniformly, each pool event once (a random order of the bin's events) before any repeats. A bin with fewer than
    ``min_events`` pool events draws from the ``min_events`` pool events nearest to its centre instead."""
    m = np.asarray(m, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(m)):
        raise InputError("simulation template", "NaN or infinite masses")
    order = np.argsort(pool_m, kind="stable")
    sm = pool_m[order]
    sw = None if weights is None else np.asarray(weights, np.float64)[order]
    k = min(int(min_events), len(sm))
    bins = np.floor(m / width).astype(np.int64)
    out = np.empty(len(m), np.int64)
    for b in np.unique(bins):
        req = np.flatnonzero(bins == b)
        i0, i1 = np.searchsorted(sm, [b * width, (b + 1) * width])
        if i1 - i0 < k:
            j = int(np.searchsorted(sm, (b + 0.5) * width))
            i0 = max(0, min(j - k // 2, len(sm) - k))
            i1 = i0 + k
        if sw is None:  # a random order of the bin's events, repeated as often as the requests need
            n = i1 - i0
            picks = np.concatenate([rng.permutation(n) for _ in range(-(-len(req) // n))])[: len(req)]
        else:
            p = sw[i0:i1] / sw[i0:i1].sum() if sw[i0:i1].sum() > 0 else None
            picks = rng.choice(i1 - i0, size=len(req), p=p)
        out[req] = order[i0 + picks]
    return out
