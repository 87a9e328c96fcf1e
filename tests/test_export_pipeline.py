"""`rrl-edge export` end to end: artifacts, the proof, the INT8 budget, and bad input leaving nothing behind."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from rrl_edge.cli import main
from rrl_edge.contracts import sha256_file

pytest_plugins = ("export_fixtures",)


def _run(capsys, *argv: str):
    rc = main(["export", "--quiet", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _untouched(out_dir: Path, before=None) -> bool:
    if before is None:
        return not out_dir.exists()
    return sorted(p.name for p in out_dir.iterdir()) == before


def test_missing_checkpoint(tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--checkpoint", str(tmp_path / "nope.pt"), "--out-dir", str(out))
    assert rc == 2 and f"checkpoint {tmp_path / 'nope.pt'} does not exist" in err
    assert _untouched(out)


def test_foreign_checkpoint(tmp_path, capsys):
    import torch

    foreign = tmp_path / "resnet.pt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, foreign)
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--checkpoint", str(foreign), "--out-dir", str(out))
    assert rc == 2 and str(foreign) in err and "not an rrl-edge checkpoint" in err
    assert _untouched(out)


def test_out_dir_that_is_a_file(random_checkpoint, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("keep me")
    rc, _, err = _run(capsys, "--checkpoint", str(random_checkpoint), "--out-dir", str(target))
    assert rc == 2 and f"--out-dir {target}: is a file" in err
    assert target.read_text() == "keep me"


def test_batch_profile_out_of_order(random_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--checkpoint", str(random_checkpoint), "--out-dir", str(out),
                      "--min-batch", "64", "--opt-batch", "32", "--max-batch", "16")
    assert rc == 2 and "--min-batch 64 --opt-batch 32 --max-batch 16" in err and "min <= opt <= max" in err
    assert _untouched(out)


def test_empty_calibration_folder(random_checkpoint, tmp_path, capsys):
    empty = tmp_path / "calib"
    empty.mkdir()
    out = tmp_path / "out"
    rc, _, err = _run(capsys, "--checkpoint", str(random_checkpoint), "--out-dir", str(out), "--int8",
                      "--calib-data", str(empty))
    assert rc == 2 and f"--calib-data {empty}" in err and "empty" in err
    assert _untouched(out)


def test_fewer_calibration_pairs_than_asked(random_checkpoint, data_root, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    rc, _, err = _run(capsys, "--checkpoint", str(random_checkpoint), "--out-dir", str(out), "--int8",
                      "--calib-data", str(data_root / "vis-nir"), "--calib-samples", "10000000")
    assert rc == 2 and "--calib-samples 10000000: fewer calibration pairs than asked" in err
    assert _untouched(out, ["keep.txt"])


def test_fp32_export_writes_checked_onnx_and_says_where_the_engine_is_built(random_checkpoint, tmp_path, capsys):
    from rrl_edge.export.tensorrt_build import tensorrt_status

    out = tmp_path / "out"
    out.mkdir()
    for stale in ("rrl.int8.onnx", "rrl.plan", "rrl.plan.json"):
        (out / stale).write_text("left by an earlier export, of another ONNX")
    rc, stdout, _ = _run(capsys, "--checkpoint", str(random_checkpoint), "--out-dir", str(out), "--proof-pairs", "128")
    assert rc == 0
    device = ["rrl.reference-scores.npy", "rrl.reference.json", "rrl.test-labels.npy", "rrl.test-pairs.npy"]
    assert sorted(p.name for p in out.iterdir()) == sorted(["export_report.json", "rrl.onnx"] + device + (
        ["rrl.plan", "rrl.plan.json"] if tensorrt_status()[0] else []))
    report = json.loads((out / "export_report.json").read_text())
    assert report["fp32"]["pairs"] >= 1000 and report["fp32"]["max_abs_diff"] <= 1e-4 and report["fp32"]["passed"]
    assert report["files"]["rrl.onnx"] == sha256_file(out / "rrl.onnx")
    from rrl_edge.fpr95_table import MEAN_RULE, FPR95Table

    for artifact in ("pytorch", "onnx-fp32"):  # each an FPR95Table on the proof pairs (rrl_edge.fpr95_table)
        table = report["fpr95"][artifact]
        assert table["mean_rule"] == MEAN_RULE and table["protocol"] == "default"
        assert {c: v["pairs"] for c, v in table["categories"].items()} == report["proof_data"]["pairs"]
        assert FPR95Table.from_json(table).to_json() == table
    assert report["fpr95"]["pytorch"]["categories"] == report["fpr95"]["onnx-fp32"]["categories"]
    onnx.checker.check_model(onnx.load(str(out / "rrl.onnx")))
    if not tensorrt_status()[0]:
        lines = [line for line in stdout.splitlines() if "rrl-edge build" in line]
        assert len(lines) == 1 and f"--model {out / 'rrl.onnx'}" in lines[0] and "no TensorRT engine here" in lines[0]


def _outlier_channel_checkpoint(source: Path, target: Path, factor: float = 1000.0) -> None:
    """The same function with one activation channel ``factor`` times larger: the first FIL stage's first
    unit scales channel 0 of its BatchNorm by ``factor`` and the next convolution divides its input weights by
    it (LeakyReLU is positively homogeneous), so FP32 scores stay put while the per-tensor INT8 scale of that
    activation grows ``factor``-fold and rounds its other channels to nothing: the outlier channel that breaks
    post-training quantization of real networks."""
    import torch

    from rrl_edge.checkpoint import load_model, save_checkpoint

    model, _ = load_model(source)
    first, second = model.fil.stages[0].convs[0], model.fil.stages[0].convs[1]
    with torch.no_grad():
        first[1].weight[0] *= factor
        first[1].bias[0] *= factor
        second[0].weight[:, 0] /= factor
    save_checkpoint(target, model)


@pytest.mark.slow
def test_int8_of_a_quantization_hostile_model_fails_and_writes_nothing(trained_checkpoint, tmp_path, capsys):
    hostile = tmp_path / "outlier.pt"
    _outlier_channel_checkpoint(trained_checkpoint, hostile)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    rc, stdout, err = _run(capsys, "--checkpoint", str(hostile), "--out-dir", str(out), "--int8",
                           "--proof-pairs", "128", "--calib-samples", "128")
    assert rc == 2 and "INT8 fails the proof" in err and "no engine built" in err
    assert " logit RMS difference " in err  # named by the score-level measure, not only by FPR95
    assert "FPR95 (%)" in stdout and "(onnxruntime, int8): FAIL" in stdout
    assert "FP32 ONNX vs PyTorch" in stdout  # the float export of the same model was proven first
    assert _untouched(out, ["keep.txt"])


@pytest.mark.slow
@pytest.mark.parametrize("shipped", [None, "joint-w050"])
def test_int8_export_of_every_shipped_joint_model_passes_the_proof(shipped, tmp_path, capsys):
    """`rrl-edge export --int8` as a user runs it (None: no --checkpoint, the default model), proven on every test
    pair of eval's default cut with the parity rule (mean FPR95 within 0.3 points, per-category bootstrap
    intervals, logit RMS and TPR at the operating point, agreement)."""
    from rrl_edge.checkpoint import shipped_checkpoint
    from rrl_edge.export.graph_check import check_graph

    out = tmp_path / "out"
    model = ["--checkpoint", str(shipped_checkpoint(shipped))] if shipped else []
    rc, stdout, err = _run(capsys, "--out-dir", str(out), "--int8", *model)
    print(stdout, err)
    assert rc == 0, err
    report = json.loads((out / "export_report.json").read_text())
    expected = shipped_checkpoint(shipped) if shipped else shipped_checkpoint()
    assert report["checkpoint"] == str(expected) and report["proof_data"]["cut"] == "default"
    assert sum(report["proof_data"]["pairs"].values()) > 25000  # every VIS-NIR test pair of the default cut
    qdq = report["int8"]["tensorrt-qdq"]
    assert qdq["passed"] and qdq["failures"] == [] and abs(qdq["mean_delta"]) <= 0.3 and qdq["agreement"] >= 0.99
    assert qdq["logit_rms"] <= 0.3 and qdq["worst_abs_tpr_delta"] <= 1.0
    assert report["fp32"]["max_abs_diff"] <= 1e-4
    for cat in qdq["categories"].values():  # an 8-bit score could take at most 256 values
        assert cat["distinct_scores"] > 256
    assert check_graph(onnx.load(str(out / "rrl.int8.onnx"))) == []
    calib = json.loads((out / "rrl.calib.json").read_text())
    assert calib["split"] == "train" and calib["sha256"] == sha256_file(out / "rrl.calib.npy")
    assert report["calibration"]["sha256"] == calib["sha256"]
    meta = {p.key: p.value for p in onnx.load(str(out / "rrl.int8.onnx")).metadata_props}
    assert meta["rrl_edge.calibration_sha256"] == calib["sha256"] and meta["rrl_edge.flavour"] == "tensorrt-qdq"
    assert (out / "rrl.int8.calib.json").is_file()
    cpu_within_budget = report["int8"]["onnxruntime-cpu"]["passed"]  # the CPU extra is left out when over budget
    assert (out / "rrl.int8-cpu.onnx").is_file() == (out / "rrl.int8-cpu.calib.json").is_file() == cpu_within_budget
    assert np.load(out / "rrl.calib.npy").shape == (512, 2, 64, 64)
