"""Template fidelity: can a classifier tell the background template from the true SR background?

The AUC of a k-fold classifier between the two samples (out-of-fold scores, classes balanced by weight) is 0.5 for a
perfect template and grows with every mismodelled feature correlation. A template that is *known* to be wrong, the
negative controls below, must give an AUC clearly above 0.5, or the check is too weak to mean anything.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..models.kfold import ClassifierSpec, kfold_classify

#: Features that scale with the jet masses (shifted by :func:`mass_shift_control`).
MASS_FEATURES = ("mj1", "mj2", "delta_mj")


def template_auc(
    x_template: np.ndarray,
    x_background: np.ndarray,
    *,
    classifier: ClassifierSpec = "hgb",
    classifier_config: dict[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """Weighted AUC of out-of-fold scores, true background (label 1) vs template (label 0), both classes
    weighted to equal total weight (the template is usually oversampled)."""
    from sklearn.metrics import roc_auc_score

    r = kfold_classify(
        x_background, x_template, classifier=classifier, classifier_config=classifier_config, folds=folds, seed=seed
    )
    y = np.concatenate([np.ones(len(r.scores_1)), np.zeros(len(r.scores_0))])
    n1, n0 = len(r.scores_1), len(r.scores_0)
    w = np.concatenate([np.full(n1, 1.0 / n1), np.full(n0, 1.0 / n0)])
    return float(roc_auc_score(y, np.concatenate([r.scores_1, r.scores_0]), sample_weight=w))


def sideband_control(x: np.ndarray, sb_mask: np.ndarray, n: int | None = None, seed: int = 0) -> np.ndarray:
    """Negative control: sideband events moved unchanged into the SR as a "template" (they carry the wrong
    m_jj-dependence of the jet masses); ``n`` events drawn without replacement (all by default)."""
    x_sb = np.asarray(x)[np.asarray(sb_mask)]
    if n is None or n >= len(x_sb):
        return x_sb
    return x_sb[np.random.default_rng(seed).choice(len(x_sb), n, replace=False)]


def mass_shift_control(x: np.ndarray, features: Sequence[str], shift: float = 0.02) -> np.ndarray:
    """Negative control: the true background with every jet-mass feature scaled by ``1 + shift``."""
    out = np.array(x, dtype=np.float64, copy=True)
    cols = [i for i, f in enumerate(features) if f in MASS_FEATURES]
    if not cols:
        raise ValueError(f"no jet-mass feature ({', '.join(MASS_FEATURES)}) among {list(features)} to shift")
    out[:, cols] *= 1.0 + shift
    return out
