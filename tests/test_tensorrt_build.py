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
from rrl_edge.export.gpu import GpuInfo
from rrl_edge.export.tensorrt_build import (
    BatchProfile, EngineRequest, _plan, is_qdq_onnx, missing_tensorrt_reason, tensorrt_status, timing_cache_name,
)
from rrl_edge.manifest import SUPPORTED_TENSORRT, EngineManifest

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
    """INT8 is explicit Q/DQ on every version: strongly typed on 10.x and 11.x, the INT8 flag on 8.5/8.6 (no
    strong typing there); INT8+FP16 stays weakly typed with both flags up to 10.x; 11.x builds FP32 and INT8
    strongly typed and refuses FP16 (no flag); TensorRT outside SUPPORTED_TENSORRT is refused."""
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
    for version in ((11, 0), (11, 4)):
        assert plan(qdq, version) == ("int8", True, False, False)
        assert plan(fp32, version) == ("fp32", True, False, False)
        for path in (fp32, qdq):
            with pytest.raises(ExportError, match="has no FP16 builder flag .*FP16 needs an FP16 ONNX"):
                plan(path, version, fp16=True)
    for version in ((12, 0), (8, 4), (7, 2)):
        with pytest.raises(ExportError, match="is not supported: rrl-edge builds with TensorRT 8.5 to 11.x") as info:
            plan(qdq, version)
        assert f"tensorrt{SUPPORTED_TENSORRT}" in str(info.value) and "scripts/setup_device.sh" in str(info.value)


def test_dla_plan_is_weakly_typed_fp16_or_int8_with_gpu_fallback_and_a_fixed_batch(onnx_pair, tmp_path):
    """DLA: FP16 (needs --fp16) or INT8 (Q/DQ, with FP16 for the float layers), weakly typed with the
    precision flags and GPU_FALLBACK on 8.5-10.x; FP32 and TensorRT 11 are refused in one line; the batch
    is fixed at the requested opt."""
    fp32, qdq = onnx_pair

    def dla(path, version, fp16=False, core=0):
        return _plan(EngineRequest(path, tmp_path / "e.plan", fp16=fp16, dla_core=core), version)

    for version in ((8, 5), (8, 6), (10, 3)):
        fp16 = dla(fp32, version, fp16=True)
        assert (fp16.precision, fp16.strongly_typed, fp16.set_flags, fp16.dla_core) == (
            "fp16", False, ("FP16", "GPU_FALLBACK"), 0)
        for want_fp16 in (False, True):
            int8 = dla(qdq, version, fp16=want_fp16, core=1)
            assert (int8.precision, int8.strongly_typed, int8.set_flags, int8.dla_core) == (
                "int8+fp16", False, ("FP16", "INT8", "GPU_FALLBACK"), 1)
        with pytest.raises(ExportError, match="--dla-core 0: the DLA runs FP16 and INT8 only, not FP32; add --fp16"):
            dla(fp32, version)
    with pytest.raises(ExportError, match="--dla-core: TensorRT 11.0 builds DLA engines only from FP16 or INT8 typed"):
        dla(qdq, (11, 0))
    request = EngineRequest(qdq, tmp_path / "e.plan", BatchProfile(1, 16, 64), dla_core=0)
    assert request.built_profile() == BatchProfile(16, 16, 16)
    assert EngineRequest(qdq, tmp_path / "e.plan", BatchProfile(1, 16, 64)).built_profile() == BatchProfile(1, 16, 64)


def test_timing_cache_is_named_for_the_tensorrt_version_and_gpu():
    """One cache file per TensorRT version and GPU architecture: a JetPack upgrade (8.5.2 -> 8.6.2) or another
    GPU gets a file of its own instead of the old one."""
    orin, rtx = GpuInfo(0, "Orin", "8.7"), GpuInfo(0, "NVIDIA GeForce RTX 3060", "8.6")
    jp5, jp6 = timing_cache_name("8.5.2.2", orin), timing_cache_name("10.3.0.30", orin)
    assert jp5 == "timing-trt8.5.2.2-sm8.7.cache" and jp6 == "timing-trt10.3.0.30-sm8.7.cache"
    assert len({jp5, jp6, timing_cache_name("10.3.0.30", rtx)}) == 3
    assert timing_cache_name("10.3.0.30", orin) == jp6  # the same TensorRT and GPU reuse it


def test_device_check_keeps_its_timing_cache_per_tensorrt_and_gpu():
    """Static: device-check names its timing cache with timing_cache_in (the per-version, per-GPU name), not
    one fixed file for every TensorRT."""
    import ast
    import inspect

    from rrl_edge.export import device_check

    source = inspect.getsource(device_check._candidates)
    assert "timing.cache" not in source and "timing_cache_in(work)" in source
    calls = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "EngineRequest"]
    assert calls and all(any(k.arg == "timing_cache" and ast.unparse(k.value) == "cache" for k in c.keywords) for c in calls)


def test_missing_tensorrt_is_explained_by_what_the_machine_has():
    """No GPU: build on the target. A GPU and JetPack's TensorRT the venv cannot see: the venv lacks
    --system-site-packages. A GPU and no TensorRT at all: the install hint, with the supported range."""
    no_gpu = missing_tensorrt_reason(False, None)
    assert "no NVIDIA GPU" in no_gpu and "on the machine whose GPU will run the engine" in no_gpu
    hidden = missing_tensorrt_reason(True, "/usr/lib/python3.8/dist-packages/tensorrt", "/home/me/venv/bin/python")
    assert "/usr/lib/python3.8/dist-packages/tensorrt" in hidden and "--system-site-packages" in hidden
    assert "/home/me/venv/bin/python" in hidden and "machine whose GPU" not in hidden
    absent = missing_tensorrt_reason(True, None)
    assert "scripts/setup_device.sh" in absent and SUPPORTED_TENSORRT in absent and "machine whose GPU" not in absent
    assert all("\n" not in m for m in (no_gpu, hidden, absent))


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
        for version in ((8, 5), (8, 6), (10, 3), (10, 13), (11, 0)):
            for fp16 in ((False,) if version[0] >= 11 else (False, True)):
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
        for name in ("TF32", "FP16", "INT8", "GPU_FALLBACK"):
            assert f"    {name}: " in block or f"{name} :" in block, name
    manifest = dict(_MANIFEST_FIELDS, builder_flags=["INT8"], cleared_flags=["TF32"])
    read = EngineManifest.from_json(manifest, tmp_path / "m.json")
    assert read.builder_flags == ["INT8"] and read.cleared_flags == ["TF32"]
    older = {k: v for k, v in manifest.items() if k not in ("builder_flags", "cleared_flags")}
    assert EngineManifest.from_json(older, tmp_path / "m.json").cleared_flags is None
    with pytest.raises(Exception, match="cleared_flags"):
        EngineManifest.from_json(dict(manifest, cleared_flags="TF32"), tmp_path / "m.json")


def test_the_manifest_records_the_dla_split_and_older_manifests_still_read(tmp_path):
    dla = dict(_MANIFEST_FIELDS, batch_min=32, batch_opt=32, batch_max=32, precision="int8+fp16", strongly_typed=False,
               dla_core=1, dla_layers=40, gpu_fallback_layers=2, gpu_fallback_names=["/q/QuantizeLinear", "/s/Sigmoid"])
    read = EngineManifest.from_json(dla, tmp_path / "m.json")
    assert (read.dla_core, read.dla_layers, read.gpu_fallback_layers) == (1, 40, 2)
    assert read.gpu_fallback_names == ["/q/QuantizeLinear", "/s/Sigmoid"]
    assert EngineManifest.from_json(read.to_json(), tmp_path / "m.json") == read
    gpu = EngineManifest.from_json(_MANIFEST_FIELDS, tmp_path / "m.json")  # written before DLA builds existed
    assert (gpu.dla_core, gpu.dla_layers, gpu.gpu_fallback_layers, gpu.gpu_fallback_names) == (None, None, None, None)
    with pytest.raises(Exception, match="dla_core 1 needs a core >= 0 and a fixed batch"):
        EngineManifest.from_json(dict(dla, batch_min=1), tmp_path / "m.json")
    with pytest.raises(Exception, match="dla_layers"):
        EngineManifest.from_json(dict(dla, dla_layers="40"), tmp_path / "m.json")
    from rrl_edge.manifest import rebuild_hint

    assert "--dla-core 1" in rebuild_hint(tmp_path / "rrl.plan", read) and "--opt-batch 32" in rebuild_hint(tmp_path / "rrl.plan", read)


def test_the_dla_build_path_sets_the_device_and_records_can_run_on_dla():
    """Static (no DLA here): a DLA build sets default_device_type DLA and DLA_core, asks can_run_on_DLA of every
    network layer, checks the core against num_DLA_cores, and hands the split to the manifest."""
    import inspect

    from rrl_edge.export import tensorrt_build

    use = inspect.getsource(tensorrt_build._use_dla)
    for needle in ("config.default_device_type = trt.DeviceType.DLA", "config.DLA_core = core",
                   "config.can_run_on_DLA(layer)", "builder.num_DLA_cores", "network.get_layer(i)"):
        assert needle in use, needle
    build = inspect.getsource(tensorrt_build.build_engine)
    assert "_use_dla(builder, config, network, plan.dla_core, p.opt)" in build and "placement" in build
    assert "request.built_profile()" in build


_MANIFEST_FIELDS = {
    "format": "rrl-edge-engine", "format_version": 2, "engine": "rrl.plan", "engine_bytes": 10,
    "engine_sha256": "0" * 64, "tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7",
    "precision": "int8", "strongly_typed": True, "batch_min": 1, "batch_opt": 32, "batch_max": 256,
    "onnx_file": "rrl.int8.onnx", "onnx_sha256": "1" * 64, "inputs": {"vis": [-1, 1, 64, 64], "other": [-1, 1, 64, 64]},
    "output": "score",
}
