"""FPR95 on cases worked out by hand, and its refusals."""

import numpy as np
import pytest

from rrl_edge.errors import InputError
from rrl_edge.metrics import fpr95


def test_perfect_separation_is_zero():
    labels = np.r_[np.ones(50), np.zeros(50)]
    scores = np.r_[np.linspace(0.6, 1, 50), np.linspace(0, 0.4, 50)]
    assert fpr95(labels, scores) == 0.0


def test_interleaved_scores_by_hand():
    # Positives score 1..10, negatives 0.5..9.5. TPR 0.9 is last reached at FPR 0.9 (threshold 1.5) and
    # TPR 1.0 first at FPR 0.9 (threshold 1): the interpolation at TPR 0.95 gives FPR95 = 90 %.
    pos = np.arange(1, 11, dtype=float)
    neg = np.arange(10, dtype=float) + 0.5
    labels = np.r_[np.ones(10), np.zeros(10)]
    assert fpr95(labels, np.r_[pos, neg]) == pytest.approx(90.0)


def test_interpolates_between_roc_points():
    # 10 positives at 10..19 and 10 negatives at 0..9, except that one negative outscores everything.
    # TPR 0.9 -> FPR 0.1 and TPR 1.0 -> FPR 0.1: the interpolated FPR at 0.95 is 10 %.
    labels = np.r_[np.ones(10), np.zeros(10)]
    scores = np.r_[np.arange(10, 20), np.arange(9), 100.0]
    assert fpr95(labels, scores) == pytest.approx(10.0)


@pytest.mark.parametrize(
    "labels,scores,match",
    [
        (np.ones(4), np.arange(4.0), "both"),
        (np.array([0, 1, 2, 1]), np.arange(4.0), "0 or 1"),
        (np.array([0, 1, 0, 1]), np.array([0.1, np.nan, 0.2, 0.3]), "NaN"),
        (np.array([0, 1, 0]), np.arange(4.0), "3 labels but 4 scores"),
    ],
)
def test_refuses_bad_input(labels, scores, match):
    with pytest.raises(InputError, match=match):
        fpr95(labels, scores)


def test_numpy_fpr95_equals_scikit_learn_with_ties_and_on_real_scores():
    """The numpy ROC (a device without scikit-learn) gives scikit-learn's FPR95, also with tied scores."""
    from sklearn.metrics import roc_curve

    from rrl_edge.metrics import roc_points

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(20, 400))
        labels = rng.integers(0, 2, n)
        labels[:2] = (0, 1)
        scores = rng.random(n) * 0.5 + labels * rng.random() * 0.8
        if trial % 2:
            scores = np.round(scores * 20) / 20  # many ties, as an INT8 score head would give
        fpr, tpr, _ = roc_curve(labels, scores)
        mine = np.interp(0.95, *roc_points(labels, scores)[::-1])
        assert abs(np.interp(0.95, tpr, fpr) - mine) < 1e-12
