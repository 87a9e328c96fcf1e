"""The first-minute report on someone's pairs: score distributions of matches and non-matches and the advice that
follows, on real patches scored by the shipped models (a camera pair a model knows, one it does not)."""

import numpy as np
import pytest

from rrl_edge.checkpoint import load_model, shipped_checkpoint
from rrl_edge.errors import InputError
from rrl_edge.metrics import fpr95
from rrl_edge.runtime.registry import score_with
from rrl_edge.separation import DEPLOY_FPR95, FINETUNE_FPR95, separation


def _separation_of(model_name: str, ps):
    model = load_model(shipped_checkpoint(model_name))[0]
    return separation(ps.labels, score_with(model, ps.patches))


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_a_known_camera_pair_is_told_to_deploy(visnir_test):
    sep = _separation_of("vis-nir", visnir_test["urban"])  # the VIS-NIR model on VIS-NIR street scenes
    assert sep.fpr95 <= DEPLOY_FPR95 and "deploy it as it is" in sep.verdict
    assert sep.matches_median > 0.9 > 0.1 > sep.nonmatches_median and sep.auc > 0.99


def test_a_pair_the_model_cannot_separate_is_told_to_fine_tune(visnir_test):
    sep = _separation_of("vis-nir", visnir_test["field"])  # grass: the VIS-NIR model's worst category (~31 %)
    assert sep.fpr95 > FINETUNE_FPR95 and sep.verdict.startswith("does not separate")
    assert "rrl-edge train --data" in sep.verdict


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_the_summary_agrees_with_the_scores_it_summarizes(visnir_test):
    ps = visnir_test["water"]
    scores = score_with(load_model(shipped_checkpoint("joint"))[0], ps.patches)
    sep = separation(ps.labels, scores)
    assert sep.fpr95 == pytest.approx(fpr95(ps.labels, scores), abs=1e-4)
    neg = scores[ps.labels == 0]
    assert sep.nonmatches_above_median_match == pytest.approx((neg > np.median(scores[ps.labels == 1])).mean() * 100, abs=0.01)
    assert sep.pairs == len(ps) and str(sep.fpr95)[:3] in sep.summary()


def test_one_class_is_refused():
    with pytest.raises(InputError, match="both matching"):
        separation(np.ones(8, np.int64), np.linspace(0, 1, 8))
