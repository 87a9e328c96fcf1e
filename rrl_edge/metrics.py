"""FPR95: the false positive rate at 95% true positive rate, in percent (lower is better)."""

from __future__ import annotations

import numpy as np

from rrl_edge.errors import InputError

try:
    from sklearn.metrics import roc_curve
except ImportError:  # a device with numpy only (JetPack + TensorRT): the same curve, computed below
    roc_curve = None


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
    fpr, tpr = roc_curve(labels, scores)[:2] if roc_curve is not None else roc_points(labels, scores)
    return float(np.interp(0.95, tpr, fpr) * 100.0)


def roc_points(labels: np.ndarray, scores: np.ndarray):  # -> Tuple[np.ndarray, np.ndarray]
    """(fpr, tpr) at every distinct score, highest first, starting at (0, 0): scikit-learn's roc_curve
    without drop_intermediate. The points it drops are collinear with their neighbours, so np.interp at
    TPR 0.95 gives the same FPR (tests/test_metrics.py checks it against scikit-learn)."""
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], labels[order].astype(np.int64)
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]  # the last index of each distinct score
    tps = np.cumsum(hits)[last]
    fps = (last + 1) - tps
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr
