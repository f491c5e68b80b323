"""k-fold classification: every event scored by a model that never saw it.

Two samples (label 1 and label 0) are split into k folds; the model of fold i trains on the other k - 1 folds and
scores fold i, so every event gets an *out-of-fold* score. A separate test set is scored by the mean of the k fold
models, and other events (e.g. outside a signal region) each by the model of one fold drawn for it.

Identical rows of a sample (a template that draws simulation events, SALAD with replacement by weight) are one
event weighted by their count: every copy sits in one fold and gets its score, and none can sit on both sides of a
split, where a classifier would learn that very point (a resampled true background against the rest of it scores AUC
0.60 with copies across folds, 0.50 without).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .base import DISCRIMINATORS, DensityRatioModel, Discriminator

ClassifierSpec = str | Callable[[int], Discriminator]


@dataclass
class KFoldResult:
    """Out-of-fold scores of both samples, fold assignments, the test-set scores (mean of the fold models) and the
    scores of other events (each by the model of a fold drawn for it)."""

    scores_1: np.ndarray
    scores_0: np.ndarray
    fold_1: np.ndarray
    fold_0: np.ndarray
    test_scores: np.ndarray | None
    seconds: float
    other_scores: np.ndarray | None = None


def make_classifier(classifier: ClassifierSpec, config: dict[str, Any] | None, seed: int) -> Discriminator:
    """A fresh discriminator: a registry name (with ``config``) or a factory ``seed -> Discriminator``."""
    if callable(classifier):
        return classifier(seed)
    cls = DISCRIMINATORS.get(classifier)
    return cls(**{**(config or {}), "seed": seed})


def fold_assignment(n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per event: a random, balanced split into ``folds`` parts."""
    fold = np.empty(n, dtype=np.int64)
    fold[rng.permutation(n)] = np.arange(n) % folds
    return fold


def kfold_classify(
    x1: np.ndarray,
    x0: np.ndarray,
    x_test: np.ndarray | None = None,
    *,
    x_other: np.ndarray | None = None,
    w1: np.ndarray | None = None,
    w0: np.ndarray | None = None,
    classifier: ClassifierSpec = "hgb",
    classifier_config: dict[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    progress: bool = False,
) -> KFoldResult:
    """Train ``folds`` classifiers of sample 1 (label 1) against sample 0 (label 0) with per-event weights
    ``w1``/``w0`` (the discriminator then balances the two classes) and return out-of-fold and test scores.

    ``x_other``: events of neither sample (e.g. outside the SR, for a bump hunt), each scored by the model of one
    fold drawn for it at random -- one model, not the fold average, so that its scores follow the same distribution
    as the out-of-fold ones."""
    if folds < 2:
        raise ValueError(f"k-fold needs folds >= 2, got {folds}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF01D]))
    w1 = np.ones(len(x1)) if w1 is None else np.asarray(w1, dtype=np.float64)
    w0 = np.ones(len(x0)) if w0 is None else np.asarray(w0, dtype=np.float64)
    x1, w1, rows1 = collapse_copies(x1, w1)  # rows1[i]: the distinct event of row i
    x0, w0, rows0 = collapse_copies(x0, w0)
    if len(x1) < folds or len(x0) < folds:
        raise ValueError(f"too few distinct events for {folds} folds: {len(x1)} (label 1) and {len(x0)} (label 0)")
    f1, f0 = fold_assignment(len(x1), folds, rng), fold_assignment(len(x0), folds, rng)
    fo = fold_assignment(len(x_other), folds, rng) if x_other is not None else None
    so = np.full(len(x_other), np.nan) if x_other is not None else None
    s1, s0 = np.full(len(x1), np.nan), np.full(len(x0), np.nan)
    test = np.zeros(len(x_test)) if x_test is not None else None
    start = time.perf_counter()
    it = range(folds)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="k-fold classifiers", unit="fold")
    for k in it:
        tr1, tr0 = f1 != k, f0 != k
        x = np.concatenate([x1[tr1], x0[tr0]])
        y = np.concatenate([np.ones(tr1.sum(), np.int64), np.zeros(tr0.sum(), np.int64)])
        w = np.concatenate([w1[tr1], w0[tr0]])
        fold_seed = int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0])
        clf = make_classifier(classifier, classifier_config, fold_seed)
        clf.fit(x, y, sample_weight=w)
        s1[~tr1] = clf.score(x1[~tr1])
        s0[~tr0] = clf.score(x0[~tr0])
        if so is not None:
            so[fo == k] = clf.score(x_other[fo == k])
        if test is not None:
            test += clf.score(x_test) / folds
    return KFoldResult(s1[rows1], s0[rows0], f1[rows1], f0[rows0], test, time.perf_counter() - start, so)


def collapse_copies(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct rows of ``x``, their summed weights ``w``, each row's index among them); ``x`` and ``w`` as they are,
    with indices 0..n-1, when no row repeats."""
    import pandas as pd

    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0:
        return x, w, np.arange(len(x))
    rows = pd.DataFrame(x)  # hashed rows: a quick check for the common case of no copies
    if not rows.duplicated().any():
        return x, w, np.arange(len(x))
    inverse = rows.groupby(list(rows.columns), sort=False, dropna=False).ngroup().to_numpy()
    first = np.unique(inverse, return_index=True)[1]
    return x[first], np.bincount(inverse, weights=w, minlength=len(first)), inverse


def kfold_density_ratio(
    model: DensityRatioModel, x_sr: np.ndarray, m_sr: np.ndarray, x_test: np.ndarray | None = None,
    m_test: np.ndarray | None = None, *, folds: int = 5, seed: int = 0,
) -> KFoldResult:
    """Out-of-fold density-ratio scores of SR data: the model's background part is fitted already (sidebands); its
    SR part is fitted on k - 1 folds and scores the k-th; the test set gets the mean of the k parts' scores."""
    start = time.perf_counter()
    fold = fold_assignment(len(x_sr), folds, np.random.default_rng(seed))
    scores = np.empty(len(x_sr))
    test = None if x_test is None else np.zeros(len(x_test))
    for k in range(folds):
        part = model.fit_sr(x_sr[fold != k], m_sr[fold != k])
        scores[fold == k] = model.score(part, x_sr[fold == k], m_sr[fold == k])
        if test is not None:
            test += model.score(part, x_test, m_test) / folds
    empty = np.empty(0)
    return KFoldResult(scores, empty, fold, empty.astype(np.int64), test, time.perf_counter() - start)
