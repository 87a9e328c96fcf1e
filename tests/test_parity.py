"""`rrl-edge parity` on real VIS-NIR test pairs: the exported FP32 ONNX matches its checkpoint, a different
model is over a tight budget (exit 1), bad input is a clean error (exit 2) that names the file."""

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from rrl_edge.cli import main
from rrl_edge.data.patchfile import PatchSet

pytest_plugins = ("export_fixtures",)

CATEGORIES = ("field", "water")  # the two with the highest FPR95: a moved score shows there first
PER_CATEGORY = 500


@pytest.fixture(scope="module")
def small_build(visnir_test: Dict[str, PatchSet], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build-like folder (manifest + patch files) of 500 real test pairs of two categories, half matching."""
    from rrl_edge.export.parity import proof_sets

    out = tmp_path_factory.mktemp("parity-data")
    sets = proof_sets({c: visnir_test[c] for c in CATEGORIES}, PER_CATEGORY, seed=1)
    from export_fixtures import write_test_build  # here: a top-level import would precede pytest's plugin import

    return write_test_build(sets, out)


@pytest.fixture(scope="module")
def trained_onnx(trained_checkpoint: Path, small_build: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simplified FP32 ONNX of the shipped VIS-NIR model, as `rrl-edge export` writes it."""
    from rrl_edge.checkpoint import load_model
    from rrl_edge.export.onnx_export import export_onnx
    from rrl_edge.export.simplify import simplify_onnx

    out = tmp_path_factory.mktemp("parity-onnx")
    model, _ = load_model(trained_checkpoint)
    raw = export_onnx(model, out / "raw.onnx")
    sample = np.load(small_build / f"test_{CATEGORIES[0]}_patches.npy")[:64]
    simplify_onnx(raw, out / "rrl.onnx", sample)
    return out / "rrl.onnx"


def _parity(capsys, *argv: str):
    rc = main(["parity", "--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_fp32_onnx_matches_its_checkpoint(trained_checkpoint, trained_onnx, small_build, tmp_path, capsys):
    report_path, plot_path = tmp_path / "new" / "parity.json", tmp_path / "plots" / "roc.png"
    rc, out, err = _parity(capsys, "--reference", str(trained_checkpoint), "--candidate", str(trained_onnx),
                           "--data", str(small_build), "--budget", "0.3", "--json", str(report_path),
                           "--plot", str(plot_path), "--batch", "64", "--threads", "2")
    assert rc == 0, err
    report = json.loads(report_path.read_text())
    # {"reference": str, "candidates": {ART: {"categories": {name: {...}}, "mean_delta", "failures", "passed"}}}
    assert report["reference"] == str(trained_checkpoint)
    assert list(report["candidates"]) == [str(trained_onnx)]
    cand = report["candidates"][str(trained_onnx)]
    assert isinstance(cand["mean_delta"], float) and cand["passed"] is True and cand["failures"] == []
    assert sorted(cand["categories"]) == sorted(CATEGORIES)
    for cat in cand["categories"].values():
        for key in ("fpr95_reference", "fpr95", "delta", "agreement", "max_abs_diff", "logit_rms", "tpr_delta"):
            assert isinstance(cat[key], float), key
        assert cat["pairs"] == PER_CATEGORY
        assert cat["max_abs_diff"] < 1e-4 and cat["agreement"] == 1.0 and cat["delta"] == 0.0
        # exact backends: the logits agree to float32 output rounding and no matching pair changes side
        assert cat["delta_ci"] == [0.0, 0.0] and cat["logit_rms"] <= 2e-3 and cat["tpr_delta"] == 0.0
        assert cat["fpr95"] == cat["fpr95_reference"] > 0  # field and water are not trivially separable
    assert cand["backend"] == "onnxruntime" and cand["precision"] == "fp32" and report["reference_backend"] == "torch"
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(plot_path.parent.glob(".*.tmp")) and not list(report_path.parent.glob(".*.tmp"))
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(CATEGORIES) + 1  # header, alignment, one row per category, the mean
    assert table[-1].startswith("| **mean** | 1,000 |")
    verdict = next(line for line in out.splitlines() if "rrl.onnx (onnxruntime, fp32)" in line)
    assert "PASS (mean FPR95 delta +0.00 [+0.00, +0.00], worst logit RMS 0.00" in verdict
    assert "worst |dTPR| 0.00, agreement 100.00%" in verdict


@pytest.mark.slow
def test_a_different_model_is_over_the_budget(trained_checkpoint, trained_onnx, small_build, tmp_path, capsys):
    """The RoadScene model scored on VIS-NIR moves FPR95 and its scores far beyond noise: exit 1 and the JSON says so;
    the same checkpoint as a candidate of its own ONNX (the reference may be any artifact) stays within."""
    from rrl_edge.checkpoint import SHIPPED

    report_path = tmp_path / "parity.json"
    rc, out, err = _parity(capsys, "--reference", str(trained_onnx), "--candidate", str(SHIPPED["roadscene"]),
                           "--candidate", str(trained_checkpoint), "--data", str(small_build), "--budget", "0.01",
                           "--json", str(report_path))
    assert rc == 1, err
    report = json.loads(report_path.read_text())
    other, same = report["candidates"][str(SHIPPED["roadscene"])], report["candidates"][str(trained_checkpoint)]
    assert other["passed"] is False and report["passed"] is False
    assert max(abs(c["delta"]) for c in other["categories"].values()) > 0.01
    assert other["worst_abs_delta"] > 0.01 and other["agreement"] < 1.0
    assert any(" logit RMS difference " in f for f in other["failures"]), other["failures"]
    assert same["passed"] is True and same["max_abs_diff"] < 1e-4
    assert "rrlnet_roadscene.pt (torch, fp32): FAIL" in out


def test_unlabeled_pairs(trained_checkpoint, trained_onnx, small_build, tmp_path, capsys):
    patches = tmp_path / "unlabeled" / "pairs.npy"
    patches.parent.mkdir()
    np.save(patches, np.load(small_build / "test_field_patches.npy")[:32])
    rc, _, err = _parity(capsys, "--reference", str(trained_checkpoint), "--candidate", str(trained_onnx),
                         "--data", str(patches))
    assert rc == 2 and str(patches) in err and "needs labelled pairs" in err


def test_missing_candidate_fails_before_scoring_and_writes_nothing(trained_checkpoint, small_build, tmp_path, capsys):
    missing = tmp_path / "deploy" / "rrl.int8.onnx"
    report_path = tmp_path / "parity.json"
    rc, out, err = _parity(capsys, "--reference", str(trained_checkpoint), "--candidate", str(missing),
                           "--data", str(small_build), "--json", str(report_path))
    assert rc == 2 and f"{missing}: artifact not found" in err
    assert out == "" and not report_path.exists()


def test_empty_data_folder(trained_checkpoint, trained_onnx, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, _, err = _parity(capsys, "--reference", str(trained_checkpoint), "--candidate", str(trained_onnx),
                         "--data", str(empty))
    assert rc == 2 and f"{empty}: data folder is empty" in err


def test_budget_must_be_non_negative(trained_checkpoint, trained_onnx, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["parity", "--reference", str(trained_checkpoint), "--candidate", str(trained_onnx), "--budget", "-1"])
    assert exc.value.code == 2 and "must not be negative" in capsys.readouterr().err
