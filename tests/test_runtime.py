"""The device runtime: runner interface, backend choice, cross-backend scores on real pairs, `rrl-edge run`, bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.cli import main
from rrl_edge.data.patchfile import PatchSet, save_patch_set
from rrl_edge.errors import CheckpointError, InputError
from rrl_edge.metrics import fpr95
from rrl_edge.runtime.onnxruntime_runner import OnnxRuntimeRunner
from rrl_edge.runtime.registry import backend_for, make_runner, open_runner
from rrl_edge.runtime.runner import score_pairs

pytest_plugins = ("export_fixtures",)


@pytest.fixture(scope="module")
def two_categories(visnir_test, tmp_path_factory):
    """A patch build-free copy of 300 real test pairs of two categories (water is the hardest), as .npy files."""
    out = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    files = {}
    for name in ("water", "field"):
        ps = visnir_test[name]
        idx = np.sort(rng.choice(len(ps), 300, replace=False))
        files[name] = out / f"{name}_patches.npy"
        save_patch_set(PatchSet(name, ps.patches[idx], ps.labels[idx]), files[name], out / f"{name}_labels.npy")
    return files


def test_backend_follows_the_file_unless_given():
    assert backend_for("a/rrl.plan") == backend_for("x.engine") == "tensorrt"
    assert backend_for("rrl.int8.onnx") == "onnxruntime"
    assert backend_for("best.pt") == "torch"
    assert backend_for("model.bin", "onnxruntime") == "onnxruntime"
    with pytest.raises(InputError, match="model.bin.*--backend"):
        backend_for("model.bin")
    with pytest.raises(InputError, match="unknown backend 'tvm'"):
        backend_for("rrl.onnx", "tvm")


def test_missing_artifact_is_named(tmp_path):
    with pytest.raises(InputError, match="nothere.onnx: artifact not found"):
        make_runner(tmp_path / "nothere.onnx")


def test_onnxruntime_matches_pytorch_on_real_pairs(exported, random_checkpoint, proof_pairs):
    """The same network through two backends: FP32 ONNX Runtime within 1e-4 of PyTorch on 1024 real pairs."""
    with open_runner(random_checkpoint) as torch_runner, open_runner(exported["fp32"]) as ort_runner:
        assert (torch_runner.backend, ort_runner.backend) == ("torch", "onnxruntime")
        assert ort_runner.precision == "fp32"
        reference = score_pairs(torch_runner, proof_pairs, 256)
        scores = score_pairs(ort_runner, proof_pairs, 100)  # 1024 = 10 x 100 + a partial batch of 24
    assert scores.shape == (len(proof_pairs),) and scores.dtype == np.float32
    assert np.max(np.abs(scores - reference)) <= 1e-4


def test_qdq_model_is_int8_and_close(qdq_model, exported, proof_pairs):
    with open_runner(qdq_model) as q, open_runner(exported["fp32"]) as f:
        assert q.precision == "int8"
        diff = np.abs(score_pairs(q, proof_pairs[:256]) - score_pairs(f, proof_pairs[:256]))
    assert 0 < diff.max() < 0.5  # quantized: not identical, but the same network


class CappedRunner(OnnxRuntimeRunner):
    """A real ONNX Runtime runner that, like an engine, accepts at most 16 pairs per call."""

    calls: list

    @property
    def max_batch(self):
        return 16

    def infer(self, vis, other):
        assert len(vis) <= 16
        self.calls.append(len(vis))
        return super().infer(vis, other)


def test_batches_larger_than_the_runner_accepts_are_split(exported, proof_pairs):
    pairs = proof_pairs[:37]
    with CappedRunner(exported["fp32"]) as capped, open_runner(exported["fp32"]) as whole:
        capped.calls = []
        split = score_pairs(capped, pairs, batch_size=256)
        assert capped.calls == [16, 16, 5]
        np.testing.assert_allclose(split, score_pairs(whole, pairs, 37), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 1, 64, 64), np.uint8), r"shape \(N, 2, 64, 64\)"),
    (np.zeros((4, 2, 32, 32), np.uint8), r"got \(4, 2, 32, 32\)"),
    (np.zeros((0, 2, 64, 64), np.uint8), r"no patch pairs"),
    (np.zeros((3, 2, 64, 64), np.int32), r"uint8 or float, got int32"),
    (np.full((3, 2, 64, 64), np.nan, np.float32), r"3 patch pair\(s\) contain NaN"),
])
def test_bad_pairs_are_refused_by_every_backend(exported, random_checkpoint, bad, message):
    for artifact in (exported["fp32"], random_checkpoint):
        with open_runner(artifact) as runner, pytest.raises(InputError, match=message):
            score_pairs(runner, bad, source="my-pairs")


def test_batch_of_zero_is_refused(exported, proof_pairs):
    with open_runner(exported["fp32"]) as runner, pytest.raises(InputError, match="batch size must be at least 1"):
        score_pairs(runner, proof_pairs[:4], batch_size=0)


def test_corrupt_or_foreign_artifacts_are_named(tmp_path, exported):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(Path(exported["fp32"]).read_bytes()[:5000])
    with pytest.raises(InputError, match="broken.onnx: not a loadable ONNX model"):
        open_runner(broken)
    ckpt = tmp_path / "broken.pt"
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="broken.pt"):
        open_runner(ckpt)


def test_foreign_onnx_inputs_are_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 64, 64])
    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["y"])], "foreign", [x], [y])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(InputError, match=r"foreign.onnx: model inputs are \['image'\]"):
        open_runner(path)


def test_run_scores_and_fpr95_match_the_runner(two_categories, exported, tmp_path, capsys):
    data = two_categories["water"]
    out = tmp_path / "scores.npy"
    assert main(["run", "--engine", str(exported["fp32"]), "--data", str(data), "--out", str(out),
                 "--batch", "50", "--quiet", "--json", str(tmp_path / "run.json")]) == 0
    scores = np.load(out)
    patches, labels = np.load(data), np.load(data.with_name("water_labels.npy"))
    with open_runner(exported["fp32"]) as runner:
        np.testing.assert_allclose(scores, score_pairs(runner, patches), atol=1e-6)
    printed = capsys.readouterr().out
    assert "onnxruntime fp32, 300 pairs" in printed
    assert f"| water_patches | 300 | {fpr95(labels, scores):.2f} |" in printed
    table = json.loads((tmp_path / "run.json").read_text())["fpr95"]  # an FPR95Table (rrl_edge.fpr95_table)
    assert table["categories"] == {"water_patches": {"fpr95": round(fpr95(labels, scores), 4), "pairs": 300}}
    assert table["mean_fpr95"] == table["categories"]["water_patches"]["fpr95"] and table["protocol"] is None


def test_run_writes_csv_and_handles_unlabelled_pairs(two_categories, exported, tmp_path, capsys):
    unlabelled = tmp_path / "pairs.npy"
    np.save(unlabelled, np.load(two_categories["field"])[:20])
    out = tmp_path / "scores.csv"
    assert main(["run", "--engine", str(exported["fp32"]), "--data", str(unlabelled), "--out", str(out), "--quiet",
                 "--json", str(tmp_path / "run.json")]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["fpr95"] is None  # no labels: no FPR95 table
    rows = out.read_text().splitlines()
    assert rows[0] == "category,index,score,label" and len(rows) == 21
    assert rows[1].startswith("pairs,0,") and rows[1].endswith(",")
    assert "FPR95" not in capsys.readouterr().out


def test_run_reads_a_patch_build_per_category(visnir_build, exported, capsys):
    assert main(["run", "--engine", str(exported["fp32"]), "--data", str(visnir_build), "--split", "val",
                 "--batch", "256", "--quiet"]) == 0
    assert "| mean |" not in capsys.readouterr().out  # one validation category: no mean row


@pytest.mark.parametrize("args, message", [
    (["--data", "{empty}"], "data folder is empty"),
    (["--data", "{missing}"], "data not found"),
    (["--data", "{pairs}", "--out", "{tmp}/scores.txt"], "expected a .npy or .csv"),
    (["--data", "{bad_shape}"], r"bad_shape.npy: patch pairs must have shape .*got \(3, 2, 32, 32\)"),
])
def test_run_bad_input_exits_2_with_the_file_named(args, message, two_categories, exported, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 2, 32, 32), np.uint8))
    names = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "pairs": two_categories["field"],
             "tmp": tmp_path, "bad_shape": tmp_path / "bad_shape.npy"}
    argv = ["run", "--engine", str(exported["fp32"]), "--quiet"] + [a.format(**names) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "rrl-edge run: error:" in err and re.search(message, err), err
    assert not (tmp_path / "scores.txt").exists()


def test_the_device_side_imports_need_neither_torch_nor_opencv():
    """A Jetson has numpy + TensorRT/pycuda or ONNX Runtime: the runtime and the CLI must import without the rest."""
    code = ("import sys; import rrl_edge.cli, rrl_edge.runtime.registry, rrl_edge.runtime.onnxruntime_runner, "
            "rrl_edge.runtime.inputs, rrl_edge.runtime.run_command, rrl_edge.data.patchfile, rrl_edge.data.store; "
            "rrl_edge.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'cv2', 'PIL', 'sklearn', 'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
