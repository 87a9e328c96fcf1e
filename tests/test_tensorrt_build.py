"""TensorRT engine building.

What needs no TensorRT (the batch profile, the build plan per TensorRT version) runs everywhere. The
builds themselves run only where TensorRT and a CUDA GPU exist, from an export folder the workstation
wrote (``RRL_EDGE_DEPLOY``, default ``deploy/``: `rrl-edge export --int8 --out-dir deploy/`), so a Jetson
runs them with numpy, TensorRT, pycuda and pytest only: no torch, no onnx here. Elsewhere they are skipped
with the reason: TensorRT is never faked.
"""

import os
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.contracts import FP32_ONNX, INT8_ONNX, REFERENCE
from rrl_edge.errors import ExportError
from rrl_edge.export.tensorrt_build import BatchProfile, EngineRequest, _plan, is_qdq_onnx, tensorrt_status
from rrl_edge.manifest import EngineManifest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("low,opt,high", [(64, 32, 16), (0, 1, 2), (1, 8, 4), (8, 4, 16)])
def test_batch_profile_must_be_ordered(low, opt, high):
    with pytest.raises(ExportError, match=f"--min-batch {low} --opt-batch {opt} --max-batch {high}"):
        BatchProfile(low, opt, high).check()
    BatchProfile(1, 1, 1).check()


@pytest.fixture
def onnx_pair(tmp_path):
    """Two files that is_qdq_onnx tells apart as it does real exports (op types are stored verbatim)."""
    fp32, qdq = tmp_path / "rrl.onnx", tmp_path / "rrl.int8.onnx"
    fp32.write_bytes(b"\x08\x07 Conv LeakyRelu Sigmoid")
    qdq.write_bytes(b"\x08\x07 QuantizeLinear DequantizeLinear Conv LeakyRelu")
    return fp32, qdq


def test_build_plan_per_tensorrt_version(onnx_pair, tmp_path):
    """INT8 is explicit Q/DQ on every version: strongly typed on 10.x, the INT8 flag on 8.5/8.6 (no strong
    typing there); INT8+FP16 stays weakly typed with both flags; TensorRT outside [8.5, 11) is refused."""
    fp32, qdq = onnx_pair
    assert is_qdq_onnx(qdq) and not is_qdq_onnx(fp32)
    fields = ("precision", "strongly_typed", "fp16_flag", "int8_flag")

    def plan(path, version, fp16=False):
        p = _plan(EngineRequest(path, tmp_path / "e.plan", fp16=fp16), version)
        assert p.parse == path  # always the ONNX asked for: no implicit calibration of another graph
        return tuple(getattr(p, f) for f in fields)

    assert plan(fp32, (10, 8)) == ("fp32", False, False, False)
    assert plan(fp32, (8, 5), fp16=True) == ("fp16", False, True, False)
    assert plan(qdq, (10, 8)) == ("int8", True, False, False)
    assert plan(qdq, (10, 0)) == ("int8", True, False, False)
    for version in ((8, 5), (8, 6)):
        assert plan(qdq, version) == ("int8", False, False, True)
    assert plan(qdq, (10, 8), fp16=True) == ("int8+fp16", False, True, True)
    for version in ((11, 0), (8, 4), (7, 2)):
        with pytest.raises(ExportError, match="is not supported: rrl-edge builds with TensorRT 8.5 to 10.x"):
            plan(qdq, version)


def test_build_without_tensorrt_is_a_clear_error(onnx_pair, tmp_path):
    if tensorrt_status()[0]:
        pytest.skip("TensorRT and a GPU are here")
    from rrl_edge.export.tensorrt_build import build_engine

    with pytest.raises(ExportError, match="on the machine whose GPU will run the engine"):
        build_engine(EngineRequest(onnx_pair[0], tmp_path / "rrl.plan"))
    assert not (tmp_path / "rrl.plan").exists()


# ---- on a GPU with TensorRT: real builds from the workstation's export folder ----

@pytest.fixture(scope="module")
def deploy():
    ok, reason = tensorrt_status()  # also the importable-but-empty `tensorrt` of tensorrt-stubs, and no GPU
    if not ok:
        pytest.skip(reason)
    folder = Path(os.environ.get("RRL_EDGE_DEPLOY", ROOT / "deploy"))
    if not (folder / REFERENCE).is_file():
        pytest.skip(f"no export folder at {folder}: run `rrl-edge export --int8 --out-dir deploy/` on a workstation "
                    "and copy deploy/ here (or set RRL_EDGE_DEPLOY)")
    return folder


def _scores(engine: Path, pairs: np.ndarray) -> np.ndarray:
    from rrl_edge.runtime.registry import open_runner
    from rrl_edge.runtime.runner import score_pairs

    with open_runner(engine) as runner:
        return score_pairs(runner, pairs, 64)


@pytest.mark.gpu
def test_fp32_engine_matches_pytorch_and_reuses_the_timing_cache(deploy, tmp_path):
    import tensorrt as trt

    from rrl_edge.export.device_check import load_reference
    from rrl_edge.export.tensorrt_build import build_engine

    cache = tmp_path / "timing.cache"
    request = EngineRequest(deploy / FP32_ONNX, tmp_path / "rrl.plan", BatchProfile(1, 16, 64), 256, timing_cache=cache)
    manifest = build_engine(request)
    assert (manifest.precision, manifest.batch_min, manifest.batch_opt, manifest.batch_max) == ("fp32", 1, 16, 64)
    assert EngineManifest.read(tmp_path / "rrl.plan") == manifest
    assert manifest.tensorrt_version == trt.__version__ and manifest.compute_capability
    assert cache.is_file() and not manifest.timing_cache_reused
    _, pairs, _, reference = load_reference(deploy)
    scores = _scores(tmp_path / "rrl.plan", pairs[:512])
    assert np.max(np.abs(scores - reference[:512])) <= 1e-3  # FP32, TF32 off
    assert build_engine(request).timing_cache_reused  # the second build starts from the first one's cache


@pytest.mark.gpu
def test_int8_engine_builds_from_the_qdq_model(deploy, tmp_path):
    from rrl_edge.export.device_check import load_reference
    from rrl_edge.export.tensorrt_build import build_engine

    manifest = build_engine(EngineRequest(deploy / INT8_ONNX, tmp_path / "rrl.plan", BatchProfile(1, 16, 64), 256,
                                          timing_cache=tmp_path / "t.cache"))
    assert manifest.precision == "int8" and manifest.inputs.keys() == {"vis", "other"}
    _, pairs, _, reference = load_reference(deploy)
    scores = _scores(tmp_path / "rrl.plan", pairs[:1024])
    assert np.mean((scores > 0.5) == (reference[:1024] > 0.5)) >= 0.99


def test_every_build_clears_tf32_and_the_manifest_records_the_flags(onnx_pair, tmp_path):
    """Static: TF32 (on by default in TensorRT 8.5-10.x) is cleared for every precision and version, the
    precision flags are set only on weakly typed networks, build_engine applies exactly the plan's flags,
    and the manifest carries them (a manifest without them still reads: older builds)."""
    import ast
    import inspect

    from rrl_edge.export import tensorrt_build

    fp32, qdq = onnx_pair
    for path in (fp32, qdq):
        for version in ((8, 5), (8, 6), (10, 3), (10, 13)):
            for fp16 in (False, True):
                plan = _plan(EngineRequest(path, tmp_path / "e.plan", fp16=fp16), version)
                assert plan.cleared_flags == ("TF32",) and "TF32" not in plan.set_flags
                assert not (plan.strongly_typed and plan.set_flags)
                assert set(plan.set_flags) == {n for n, on in (("FP16", plan.fp16_flag), ("INT8", plan.int8_flag)) if on}
    source = inspect.getsource(tensorrt_build.build_engine)
    tree = ast.parse(source.lstrip())
    calls = {(n.func.attr, ast.unparse(n.args[0])) for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in ("clear_flag", "set_flag")}
    assert calls == {("clear_flag", "flags[name]"), ("set_flag", "flags[name]")}
    loops = [ast.unparse(n.iter) for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert "plan.cleared_flags" in loops and "plan.set_flags" in loops
    # the loops sit at the top level of the function body: no condition can skip clearing TF32
    body = tree.body[0].body
    assert any(isinstance(n, ast.For) and ast.unparse(n.iter) == "plan.cleared_flags" for n in body)
    # TensorRT's own stubs name every flag the builder uses
    stubs = Path(tensorrt_build.__file__).resolve().parents[0]
    import importlib.util
    spec = importlib.util.find_spec("tensorrt_bindings")
    if spec is not None and spec.submodule_search_locations:
        text = (Path(list(spec.submodule_search_locations)[0]) / "tensorrt.pyi").read_text()
        block = text[text.index("class BuilderFlag"):][:6000]
        for name in ("TF32", "FP16", "INT8"):
            assert f"    {name}: " in block or f"{name} :" in block, name
    manifest = dict(_MANIFEST_FIELDS, builder_flags=["INT8"], cleared_flags=["TF32"])
    read = EngineManifest.from_json(manifest, tmp_path / "m.json")
    assert read.builder_flags == ["INT8"] and read.cleared_flags == ["TF32"]
    older = {k: v for k, v in manifest.items() if k not in ("builder_flags", "cleared_flags")}
    assert EngineManifest.from_json(older, tmp_path / "m.json").cleared_flags is None
    with pytest.raises(Exception, match="cleared_flags"):
        EngineManifest.from_json(dict(manifest, cleared_flags="TF32"), tmp_path / "m.json")


_MANIFEST_FIELDS = {
    "format": "rrl-edge-engine", "format_version": 2, "engine": "rrl.plan", "engine_bytes": 10,
    "engine_sha256": "0" * 64, "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
    "precision": "int8", "strongly_typed": True, "batch_min": 1, "batch_opt": 32, "batch_max": 256,
    "onnx_file": "rrl.int8.onnx", "onnx_sha256": "1" * 64, "inputs": {"vis": [-1, 1, 64, 64], "other": [-1, 1, 64, 64]},
    "output": "score",
}
