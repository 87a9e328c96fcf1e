"""TensorRT engine building.

What needs no TensorRT (the batch profile, the build plan per TensorRT version) runs everywhere. The
builds themselves run only where TensorRT and a CUDA GPU exist, and are skipped with the reason elsewhere:
TensorRT is never faked.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.errors import ExportError
from rrl_edge.export.tensorrt_build import BatchProfile, EngineRequest, _plan, is_qdq_onnx, tensorrt_status

pytest_plugins = ("export_fixtures",)


@pytest.mark.parametrize("low,opt,high", [(64, 32, 16), (0, 1, 2), (1, 8, 4), (8, 4, 16)])
def test_batch_profile_must_be_ordered(low, opt, high):
    with pytest.raises(ExportError, match=f"--min-batch {low} --opt-batch {opt} --max-batch {high}"):
        BatchProfile(low, opt, high).check()
    BatchProfile(1, 1, 1).check()


def test_build_plan_per_tensorrt_version(exported, qdq_model, tmp_path):
    fp32, qdq = Path(exported["fp32"]), Path(qdq_model)
    assert is_qdq_onnx(qdq) and not is_qdq_onnx(fp32)
    plan = _plan(EngineRequest(fp32, tmp_path / "e", fp16=True), (10, 8))
    assert (plan.precision, plan.int8, plan.fp16_flag, plan.strongly_typed) == ("fp16", "", True, False)
    plan = _plan(EngineRequest(qdq, tmp_path / "e"), (10, 8))
    assert (plan.precision, plan.int8, plan.strongly_typed) == ("int8", "explicit", True)
    plan = _plan(EngineRequest(qdq, tmp_path / "e", fp16=True), (10, 8))  # FP16 flag is illegal when strongly typed
    assert (plan.precision, plan.strongly_typed, plan.fp16_flag) == ("int8+fp16", False, True)
    plan = _plan(EngineRequest(qdq, tmp_path / "e", fp16=True), (8, 6))
    assert (plan.int8, plan.strongly_typed, plan.parse) == ("explicit", False, qdq)
    plan = _plan(EngineRequest(qdq, tmp_path / "e", fp16=True), (11, 0))
    assert (plan.precision, plan.strongly_typed, plan.fp16_flag) == ("int8", True, False)
    with pytest.raises(ExportError, match="implicit INT8 calibrates the FP32 graph"):
        _plan(EngineRequest(qdq, tmp_path / "e"), (8, 5))  # JetPack 5: implicit, needs rrl.onnx beside
    (qdq.parent / "rrl.onnx").write_bytes(fp32.read_bytes())
    plan = _plan(EngineRequest(qdq, tmp_path / "e"), (8, 5))
    assert (plan.int8, plan.parse.name) == ("implicit", "rrl.onnx")
    with pytest.raises(ExportError, match="removed implicit INT8"):
        _plan(EngineRequest(qdq, tmp_path / "e", int8_mode="implicit"), (11, 0))
    plan = _plan(EngineRequest(fp32, tmp_path / "e", int8_mode="implicit"), (8, 6))  # TensorRT calibrates rrl.onnx
    assert (plan.precision, plan.int8, plan.parse) == ("int8", "implicit", fp32)
    with pytest.raises(ExportError, match="has no Q/DQ nodes"):
        _plan(EngineRequest(fp32, tmp_path / "e", int8_mode="explicit"), (10, 8))


def test_build_without_tensorrt_is_a_clear_error(exported, tmp_path):
    ok, reason = tensorrt_status()
    if ok:
        pytest.skip("TensorRT and a GPU are here")
    with pytest.raises(ExportError, match="on the machine whose GPU will run the engine"):
        from rrl_edge.export.tensorrt_build import build_engine

        build_engine(EngineRequest(Path(exported["fp32"]), tmp_path / "rrl.plan"))
    assert not (tmp_path / "rrl.plan").exists()


@pytest.fixture(scope="module")
def trt():
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    ok, reason = tensorrt_status()  # also catches the importable-but-empty `tensorrt` of tensorrt-stubs, and no GPU
    if not ok:
        pytest.skip(reason)
    return trt


def _run_engine(engine_path: Path, pairs: np.ndarray) -> np.ndarray:
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    x = pairs.astype(np.float32) / np.float32(255.0)
    with TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path)))) as runner:
        out = runner.infer({"vis": np.ascontiguousarray(x[:, :1]), "other": np.ascontiguousarray(x[:, 1:])})
    return np.asarray(out["score"]).reshape(-1)


@pytest.mark.gpu
def test_fp32_engine_matches_onnxruntime(trt, exported, proof_pairs, tmp_path):
    from rrl_edge.runtime.onnxruntime_runner import cpu_session
    from rrl_edge.runtime.registry import score_with
    from rrl_edge.export.tensorrt_build import build_engine

    cache = tmp_path / "timing.cache"
    request = EngineRequest(Path(exported["fp32"]), tmp_path / "rrl.plan", BatchProfile(1, 16, 64), 256,
                            timing_cache=cache)
    manifest = build_engine(request)
    assert manifest["precision"] == "fp32" and manifest["batch_profile"] == {"min": 1, "opt": 16, "max": 64}
    assert json.loads((tmp_path / "rrl.plan.json").read_text()) == manifest
    assert manifest["tensorrt_version"] == trt.__version__ and manifest["gpu"]["compute_capability"]
    assert cache.is_file() and not manifest["timing_cache"]["reused"]
    pairs = proof_pairs[:64]
    reference = score_with(cpu_session(Path(exported["fp32"])), pairs)
    assert np.max(np.abs(_run_engine(tmp_path / "rrl.plan", pairs) - reference)) <= 1e-3
    again = build_engine(request)  # the second build starts from the timing cache of the first
    assert again["timing_cache"]["reused"]


@pytest.mark.gpu
def test_int8_engine_builds_from_the_qdq_model(trt, qdq_model, proof_pairs, tmp_path):
    from rrl_edge.export.tensorrt_build import build_engine

    manifest = build_engine(EngineRequest(Path(qdq_model), tmp_path / "rrl.plan", BatchProfile(1, 16, 64), 256,
                                          timing_cache=tmp_path / "t.cache"))
    assert manifest["precision"].startswith("int8") and manifest["inputs"].keys() == {"vis", "other"}
    scores = _run_engine(tmp_path / "rrl.plan", proof_pairs[:64])
    assert scores.shape == (64,) and np.all((scores >= 0) & (scores <= 1))
