"""`rrl-edge device-check` with ONNX Runtime standing in for TensorRT, on JetPack 5's Python (3.8) with numpy
1.24 and ONNX Runtime only: the same command a Jetson runs, reading only the files the workstation export
wrote (test pairs, labels, PyTorch's scores). The TensorRT half (engines, FP16, the INT8 inspector) needs a
GPU: tests/test_runtime_tensorrt.py runs it there (pytest -m gpu)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.errors import InputError

pytest_plugins = ("export_fixtures",)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def deploy(trained_checkpoint, tmp_path_factory):
    """A real `rrl-edge export --int8` of the shipped model, 128 test pairs per category (budget widened: a
    small proof's FPR95 is noisy; the full proof is CI's)."""
    from rrl_edge.cli import main

    out = tmp_path_factory.mktemp("deploy")
    assert main(["export", "--checkpoint", str(trained_checkpoint), "--out-dir", str(out), "--int8", "--quiet",
                 "--proof-pairs", "128", "--calib-samples", "64", "--budget", "50"]) == 0
    return out


@pytest.mark.slow
def test_export_writes_what_the_device_needs(deploy):
    ref = json.loads((deploy / "rrl.reference.json").read_text())
    pairs = np.load(deploy / "rrl.test-pairs.npy")
    assert pairs.dtype == np.uint8 and pairs.shape[1:] == (2, 64, 64)
    assert len(ref["categories"]) == 8 and ref["categories"][-1]["stop"] == len(pairs)
    assert np.load(deploy / "rrl.reference-scores.npy").shape == (len(pairs),)
    assert len(ref["int8_convs"]) >= 8  # the quantized convolutions the INT8 engine must run in INT8


@pytest.mark.slow
def test_device_check_in_process(deploy, tmp_path):
    from rrl_edge.export.device_check import format_report, run_device_check

    report = run_device_check(deploy, tmp_path / "r.json", "onnxruntime", show_progress=False)
    assert set(report["candidates"]) == {"fp32", "int8"}
    fp32 = report["candidates"]["fp32"]["parity"]
    assert fp32["max_abs_diff"] <= 1e-4 and fp32["worst_abs_delta"] == 0.0
    assert report["candidates"]["int8"]["parity"]["agreement"] >= 0.99
    assert report["passed"] and "PASSED" in format_report(report)
    assert json.loads((tmp_path / "r.json").read_text())["passed"]


@pytest.mark.slow
def test_device_check_refuses_changed_files(deploy, tmp_path):
    from rrl_edge.export.device_check import run_device_check

    copy = tmp_path / "d"
    copy.mkdir()
    for p in deploy.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    scores = np.load(copy / "rrl.reference-scores.npy")
    np.save(copy / "rrl.reference-scores.npy", scores[::-1].copy())
    with pytest.raises(InputError, match="rrl.reference-scores.npy: sha256 differs"):
        run_device_check(copy, tmp_path / "r.json", "onnxruntime", show_progress=False)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_device_check_refuses_a_folder_mixing_two_exports(deploy, exported, tmp_path):
    """Another model's rrl.onnx beside this export's reference scores (what a kill during an install over an old
    export could leave): refused, naming the model, before any score is compared."""
    from rrl_edge.export.device_check import run_device_check

    copy = tmp_path / "d"
    copy.mkdir()
    for p in deploy.iterdir():
        if p.is_file():
            (copy / p.name).write_bytes(p.read_bytes())
    (copy / "rrl.onnx").write_bytes(Path(exported["fp32"]).read_bytes())  # the random model's export
    with pytest.raises(InputError, match="rrl.onnx: is not the model rrl.reference.json was written for"):
        run_device_check(copy, tmp_path / "r.json", "onnxruntime", show_progress=False)


@pytest.mark.slow
def test_device_check_on_python38_with_numpy_124_and_onnxruntime_only(deploy, tmp_path):
    from test_device_python import device_venv

    venv = device_venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = subprocess.run([str(venv / "bin/rrl-edge"), "device-check", "--deploy", str(deploy), "--json",
                          str(tmp_path / "report.json"), "--backend", "onnxruntime", "--quiet"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "PASSED" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] and report["candidates"]["int8"]["parity"]["agreement"] >= 0.99
    versions = subprocess.run([str(venv / "bin/python"), "-c", "import numpy, sys; print(numpy.__version__, "
                               "sys.version_info[:2], 'sklearn' in sys.modules)"], capture_output=True, text=True)
    assert versions.stdout.strip() == "1.24.4 (3, 8) False"


def test_dla_core_is_a_tensorrt_option_and_must_not_be_negative(tmp_path, capsys):
    """`--dla-core N` parses on build and device-check; the DLA is TensorRT's, so ONNX Runtime refuses it, and
    a negative core is refused by the parser (exit 2), before anything is read."""
    from rrl_edge.cli import build_parser, main
    from rrl_edge.export.device_check import _candidates

    parser = build_parser()
    assert parser.parse_args(["build", "--onnx", "rrl.int8.onnx", "--dla-core", "1"]).dla_core == 1
    assert parser.parse_args(["build", "--onnx", "rrl.onnx"]).dla_core is None
    assert parser.parse_args(["device-check", "--deploy", "d", "--json", "r.json", "--dla-core", "0"]).dla_core == 0
    for fp in ("rrl.onnx", "rrl.int8.onnx"):
        (tmp_path / fp).write_bytes(b"onnx")
    with pytest.raises(InputError, match="--dla-core: the DLA is TensorRT's"):
        _candidates(tmp_path, tmp_path / "engines", "onnxruntime", dla_core=0)
    with pytest.raises(SystemExit) as info:
        main(["build", "--onnx", str(tmp_path / "rrl.onnx"), "--dla-core", "-1"])
    assert info.value.code == 2 and "--dla-core: must not be negative" in capsys.readouterr().err


def test_device_check_without_tensorrt_says_why_in_one_line(tmp_path):
    """No TensorRT here: the TensorRT backend stops at the first build with the reason, not a traceback."""
    from rrl_edge.errors import ExportError
    from rrl_edge.export.device_check import _candidates
    from rrl_edge.export.tensorrt_build import tensorrt_status

    if tensorrt_status()[0]:
        pytest.skip("TensorRT and a GPU are here")
    for fp in ("rrl.onnx", "rrl.int8.onnx"):
        (tmp_path / fp).write_bytes(b"onnx")
    with pytest.raises(ExportError, match="cannot build TensorRT engines here: ") as info:
        _candidates(tmp_path, tmp_path / "engines", "tensorrt")
    assert "\n" not in str(info.value) and not (tmp_path / "engines").exists()
