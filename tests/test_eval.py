"""Evaluation on real VIS-NIR test patches: the shipped model, the SIFT baseline, the CLI's table and JSON."""

import json
import subprocess
import sys

import numpy as np
import pytest

from rrl_edge.baselines.sift import sift_scores
from rrl_edge.checkpoint import load_model
from rrl_edge.errors import InputError
from rrl_edge.evaluate import evaluate_sets
from rrl_edge.fpr95_table import MEAN_RULE, FPR95Table
from rrl_edge.runtime.registry import score_with
from rrl_edge.metrics import fpr95

# Strongest-first cut (the original protocol, `--keypoint-sampling strongest`): the earlier goals for
# the shipped models (docs/results.md has the measured numbers: 2.63 and 1.18). Scores are deterministic for a given
# build and checkpoint, so these only fail when the model or the patches change.
SHIPPED_MEAN_FPR95_CEILING = 3.0
ROADSCENE_FPR95_CEILING = 2.0


@pytest.fixture(scope="module")
def shipped():
    from rrl_edge.checkpoint import shipped_checkpoint

    return load_model(shipped_checkpoint("vis-nir"))[0]


@pytest.fixture(scope="module")
def visnir_strongest_test(visnir_strongest_build):
    """The VIS-NIR test split cut strongest-first (byte-identical to the earlier default cut)."""
    from rrl_edge.data.build import load_split

    return load_split(visnir_strongest_build, "test")


@pytest.mark.slow
def test_shipped_model_beats_sift_on_every_test_category(shipped, visnir_strongest_test):
    sets = visnir_strongest_test
    assert sorted(sets) == ["field", "forest", "indoor", "mountain", "oldbuilding", "street", "urban", "water"]
    net = evaluate_sets(sets, lambda ps: score_with(shipped, ps.patches))
    sift = evaluate_sets(sets, lambda ps: sift_scores(ps.patches))
    assert net.mean_fpr95 < SHIPPED_MEAN_FPR95_CEILING
    assert net.mean_fpr95 < sift.mean_fpr95 / 2
    for name in sets:
        assert net[name].fpr95 < sift[name].fpr95, name


def test_sift_baseline_separates_real_pairs_better_than_chance(visnir_test):
    ps = visnir_test["field"]
    scores = sift_scores(ps.patches)
    assert scores[ps.labels == 1].mean() > scores[ps.labels == 0].mean()
    assert fpr95(ps.labels, scores) < 80


def test_scores_do_not_depend_on_batch_size(shipped, visnir_test):
    patches = visnir_test["water"].patches[:300]
    np.testing.assert_allclose(score_with(shipped, patches, 7), score_with(shipped, patches, 256), atol=1e-5)


@pytest.mark.slow  # 15-40 s on 2 cores; .ci/run runs it
def test_eval_cli_table_and_json(tmp_path, data_root, visnir_build):
    out = tmp_path / "eval.json"
    roc = tmp_path / "roc.png"
    hist = tmp_path / "hist.png"
    result = subprocess.run(
        [sys.executable, "-m", "rrl_edge.cli", "eval", "--data", str(data_root / "vis-nir"), "--categories",
         "field,water", "--baseline", "sift", "--json", str(out), "--roc", str(roc), "--hist", str(hist), "--quiet"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert set(report["categories"]) == {"field", "water"}
    for cat in report["categories"].values():
        assert set(cat) == {"fpr95", "pairs"} and cat["pairs"] > 1000
    assert report["mean_fpr95"] == pytest.approx(np.mean([c["fpr95"] for c in report["categories"].values()]), abs=1e-3)
    assert report["mean_rule"] == MEAN_RULE and report["baseline"]["mean_rule"] == MEAN_RULE  # an FPR95Table
    assert FPR95Table.from_json(report).to_json() == {k: report[k] for k in FPR95Table.from_json(report).to_json()}
    assert report["baseline"]["method"] == "sift"
    assert report["protocol"]["keypoint_sampling"] == "uniform" and report["protocol"]["negatives"] == "far"
    assert report["protocol"]["keypoints_per_image"] == 96 and report["split"] == "test"
    assert "field" in result.stdout and "mean" in result.stdout and "SIFT FPR95" in result.stdout
    assert roc.stat().st_size > 10_000 and hist.stat().st_size > 10_000
    sep = report["separation"]  # pooled over the categories scored, with the advice printed beside it
    assert sep["pairs"] == sum(c["pairs"] for c in report["categories"].values())
    assert sep["matches_median"] > sep["nonmatches_median"] and sep["verdict"] in result.stdout


@pytest.mark.parametrize(
    "pairs,match",
    [
        (np.zeros((4, 2, 32, 32), np.uint8), r"shape \(N, 2, 64, 64\)"),
        (np.zeros((0, 2, 64, 64), np.uint8), "N = 0"),
        (np.zeros((4, 2, 64, 64), np.int64), "uint8 or float"),
        (np.full((4, 2, 64, 64), np.nan, np.float32), "4 patch pair\\(s\\) contain NaN"),
    ],
)
def test_bad_pairs_are_refused(shipped, pairs, match):
    with pytest.raises(InputError, match=match):
        score_with(shipped, pairs)


def test_eval_cli_on_an_empty_folder_names_it(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "rrl_edge.cli", "eval", "--data", str(empty)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert str(empty) in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_on_roadscene_uses_the_joint_model_and_beats_sift(tmp_path, data_root):
    out = tmp_path / "rs.json"
    result = subprocess.run(
        [sys.executable, "-m", "rrl_edge.cli", "eval", "--data", str(data_root / "roadscene"), "--baseline", "sift",
         "--keypoint-sampling", "strongest", "--train-keypoints", "16", "--json", str(out), "--quiet"],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["checkpoint"].endswith("rrlnet_joint.pt")
    assert list(report["categories"]) == ["roadscene"] and report["categories"]["roadscene"]["pairs"] > 5000
    assert report["mean_fpr95"] <= ROADSCENE_FPR95_CEILING
    assert report["baseline"]["mean_fpr95"] > 10 * report["mean_fpr95"]
    assert report["protocol"]["keypoint_sampling"] == "strongest"


# The default (uniform, whole-range) cut. The accuracy goals are VIS-NIR mean <= 3.0 and RoadScene <= 1.0 there;
# the shipped models do not meet them yet (docs/results.md, "Every model on every dataset"), so these hold the
# measured numbers as regression bounds (measured + 0.1 point) until a better model ships. Tighten them then.
UNIFORM_VISNIR_MEAN_BOUND = 6.6  # measured 6.49 (field 30.89, water 13.50, mountain 5.57); goal 3.0
UNIFORM_ROADSCENE_BOUND = 1.4  # measured 1.29; goal 1.0


@pytest.mark.slow
def test_shipped_visnir_model_on_the_uniform_cut(shipped, visnir_build, visnir_test):
    from rrl_edge.data.build import read_manifest

    assert read_manifest(visnir_build)["protocol"]["test"]["keypoint_sampling"] == "uniform"
    net = evaluate_sets(visnir_test, lambda ps: score_with(shipped, ps.patches))
    assert net.mean_fpr95 <= UNIFORM_VISNIR_MEAN_BOUND, net


@pytest.mark.slow
def test_shipped_roadscene_model_on_the_uniform_cut(data_root):
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.data.build import PatchConfig, ensure_dataset, load_split

    sets = load_split(ensure_dataset(data_root / "roadscene", PatchConfig(train_keypoints_per_image=16), progress=False), "test")
    model = load_model(shipped_checkpoint("roadscene"))[0]
    net = evaluate_sets(sets, lambda ps: score_with(model, ps.patches))
    assert net.mean_fpr95 <= UNIFORM_ROADSCENE_BOUND, net


# The joint models (VIS-NIR country + RoadScene training images, whole-range cut), held at their measured numbers
# (+0.1 point): width 0.25, the default for every layout, better on each test split than the model trained on that
# set alone (6.49 and 1.29 there) and within the RoadScene goal (1.0); width 0.5 of the family (a model soup:
# its 200-minute checkpoint averaged with a fine-tune of it), the one model within both accuracy goals, not the
# default (2.6x fewer pairs/s).
JOINT_UNIFORM_BOUNDS = {  # shipped name: (width, VIS-NIR mean bound, RoadScene bound); goals 3.0 and 1.0
    "joint": (0.25, 3.78, 0.98),  # measured 3.68 (field 13.59, water 10.26, mountain 4.79) and 0.88
    "joint-w050": (0.5, 2.50, 0.98),  # measured 2.40 (field 5.52, water 9.38, mountain 3.80) and 0.88
    "joint-remap": (0.25, 2.88, 0.98),  # the option trained with --modality remap: measured 2.78 and 0.88
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(JOINT_UNIFORM_BOUNDS))
def test_shipped_joint_models_on_both_uniform_cuts(name, visnir_test, data_root):
    """One network for both pairs of spectra, on each dataset's default test cut."""
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.data.build import PatchConfig, ensure_dataset, load_split

    width, visnir_bound, roadscene_bound = JOINT_UNIFORM_BOUNDS[name]
    model = load_model(shipped_checkpoint(name))[0]
    assert model.cfg.width == width
    visnir = evaluate_sets(visnir_test, lambda ps: score_with(model, ps.patches))
    assert visnir.mean_fpr95 <= visnir_bound, visnir
    sets = load_split(ensure_dataset(data_root / "roadscene", PatchConfig(train_keypoints_per_image=16), progress=False), "test")
    roadscene = evaluate_sets(sets, lambda ps: score_with(model, ps.patches))
    assert roadscene.mean_fpr95 <= roadscene_bound, roadscene
