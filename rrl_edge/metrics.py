"""FPR95: the false positive rate at 95% true positive rate, in percent (lower is better)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_curve

from rrl_edge.errors import InputError


def fpr95(labels: np.ndarray, scores: np.ndarray, source: str = "fpr95") -> float:
    """As in the RRL-Net authors' code: sklearn's ROC on (label, score), FPR interpolated at TPR 0.95.

    Ties in the score matter: roc_curve puts tied scores on one threshold, and the linear
    interpolation runs between its neighbours, exactly like the published evaluation.
    """
    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise InputError(f"{source}: {labels.size} labels but {scores.size} scores")
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{source}: scores contain NaN or infinity")
    if not np.isin(labels, (0, 1)).all():
        raise InputError(f"{source}: labels must be 0 or 1")
    if labels.min() == labels.max():
        raise InputError(f"{source}: FPR95 needs both matching (1) and non-matching (0) pairs")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.interp(0.95, tpr, fpr) * 100.0)
