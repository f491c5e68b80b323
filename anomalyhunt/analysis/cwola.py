"""Classification without labels (CWoLa): SR data against a background reference, k-fold
(:func:`~anomalyhunt.models.kfold.kfold_classify`), every event scored by a model that never saw it."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..models.kfold import KFoldResult, kfold_classify


def cwola(
    x_data: np.ndarray,
    x_ref: np.ndarray,
    x_test: np.ndarray | None = None,
    *,
    ref_weight: np.ndarray | None = None,
    **kwargs: Any,
) -> KFoldResult:
    """CWoLa: SR data (label 1) against a reference, a background template or sideband data (label 0). The
    classes are balanced by weight, so an oversampled template counts as much as the data in total."""
    return kfold_classify(x_data, x_ref, x_test, w0=ref_weight, **kwargs)
