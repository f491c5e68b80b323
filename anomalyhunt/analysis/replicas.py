"""Poisson replica weights: many full-size background-only samples from one, without duplicating a row.

A replica gives every event an integer count w ~ Poisson(1) (the bootstrap's large-sample limit); the hunt then
treats an event as w events wherever it counts -- the generator's loss, the classifier's weights, the cut's
quantiles, the histograms and the direct estimate -- while the event stays one row: all its copies sit in the same
k-fold fold, the same side of a training/validation split and the same bootstrap draw, so no model ever scores a
copy of an event it was trained on (duplicated rows would). Replicas of one sample share that sample's own
fluctuation: their spread measures the method's, their mean carries the sample's.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def replica_weights(n: int, seed: int, replica: int) -> np.ndarray:
    """Integer Poisson(1) counts for ``n`` events, one independent draw per (``seed``, ``replica``)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(replica), 0x9E91]))
    return rng.poisson(1.0, int(n)).astype(np.int64)


def check_counts(w: np.ndarray | None, n: int, source: str = "event counts") -> np.ndarray | None:
    """``w`` as int64 counts of ``n`` events (None stays None: every event counts once); refuses anything but
    non-negative integers (a generator's loss and a Poisson fit take event counts, not arbitrary weights)."""
    if w is None:
        return None
    w = np.asarray(w)
    if w.shape != (n,):
        raise InputError(source, f"{w.shape} counts for {n} events")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(np.asarray(w, np.float64) % 1 != 0):
        raise InputError(source, "event counts must be non-negative integers (Poisson replica weights)")
    return w.astype(np.int64)


def repeat_rows(a: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """``a`` with row i repeated ``w[i]`` times (unchanged without counts)."""
    return a if w is None else np.repeat(a, w, axis=0)


def total(mask: np.ndarray, w: np.ndarray | None) -> int:
    """How many events ``mask`` selects, each counted ``w`` times."""
    return int(mask.sum()) if w is None else int(w[mask].sum())
