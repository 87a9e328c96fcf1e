"""The TensorRT runner: its engine checks everywhere, its inference where TensorRT and a GPU exist.

What needs no TensorRT runs on every machine, through the public entry points (make_runner / open): the
manifest written by the real manifest code of `rrl-edge build`, missing or unreadable manifests, a
truncated or replaced engine (size / sha256), other input names or shapes, and the rules for another
TensorRT version or GPU. Engines are only ever built by TensorRT: the GPU tests export the shipped model
(FP32 and Q/DQ INT8, as `rrl-edge export` does), build engines from it and compare the runner with ONNX
Runtime on real VIS-NIR pairs; they are skipped with the reason where there is no TensorRT, pycuda or
GPU. TensorRT is never faked.
"""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rrl_edge.errors import InputError
from rrl_edge.export.gpu import GpuInfo
from rrl_edge.export.tensorrt_build import BatchProfile, EngineRequest, _plan, engine_manifest, tensorrt_status
from rrl_edge.manifest import SUPPORTED_TENSORRT, EngineManifest, Environment, manifest_path
from rrl_edge.runtime.tensorrt_runner import INSTALL_HINT, check_tensorrt_version, numpy_dtype, plan_chunks
from rrl_edge.runtime.registry import make_runner

pytest_plugins = ("export_fixtures",)

ROOT = Path(__file__).resolve().parents[1]
BUILT_WITH = Environment("10.8.0.43", "8.6", "NVIDIA GeForce RTX 3060")


def _tensorrt_here():
    ok, reason = tensorrt_status()  # also the importable-but-empty `tensorrt` of tensorrt-stubs, and no GPU
    if ok and importlib.util.find_spec("pycuda") is None:
        return False, "pycuda is not installed"
    return ok, reason


TENSORRT_OK, TENSORRT_REASON = _tensorrt_here()
# a mark, not a fixture: skipped before the (session-scoped) export fixtures are built for nothing
needs_tensorrt = pytest.mark.skipif(not TENSORRT_OK, reason=TENSORRT_REASON)


def _write_engine(folder: Path, data: bytes, trt_version: str = BUILT_WITH.tensorrt_version,
                  gpu: GpuInfo = GpuInfo(0, BUILT_WITH.gpu_name, BUILT_WITH.compute_capability)) -> Path:
    """``data`` as rrl.plan, with the manifest the real build code writes for it (rrl.plan.json)."""
    onnx = folder / "rrl.onnx"
    if not onnx.exists():
        onnx.write_bytes(b"stands in for the exported ONNX: the manifest only records its name and sha256")
    request = EngineRequest(onnx, folder / "rrl.plan", BatchProfile(1, 8, 16))
    manifest = engine_manifest(request, _plan(request, (10, 8)), trt_version, gpu, data, 1.0, folder / "timing.cache")
    request.engine.write_bytes(data)
    manifest.write(request.engine)
    return request.engine


def _edit_manifest(engine: Path, **changes: object) -> None:
    path = manifest_path(engine)
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def engine_bytes() -> bytes:
    return np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes()


def _open_error(engine: Path, **options: object) -> str:
    with pytest.raises(InputError) as info:
        make_runner(engine, **options).open()
    return str(info.value)


def test_the_build_manifest_records_the_engine_size_and_hash(tmp_path, engine_bytes):
    engine = _write_engine(tmp_path, engine_bytes)
    manifest = EngineManifest.read(engine)
    assert manifest.engine_bytes == len(engine_bytes)
    assert manifest.engine_sha256 == hashlib.sha256(engine_bytes).hexdigest()
    manifest.check_size(engine)
    manifest.check_bytes(engine, engine_bytes)
    manifest.check_interface(engine)  # what the builder writes is what the runner expects
    assert manifest.check_environment(engine, BUILT_WITH) == []
    assert EngineManifest.from_json(json.loads(manifest_path(engine).read_text()), engine) == manifest
    assert make_runner(engine).max_batch == 16  # from the manifest, before open: score_pairs sizes batches with it


def test_missing_manifest_is_refused_unless_the_check_is_off(tmp_path, engine_bytes):
    engine = tmp_path / "rrl.plan"
    engine.write_bytes(engine_bytes)
    message = _open_error(engine)
    assert str(engine) in message and "no engine manifest rrl.plan.json" in message
    assert "rrl-edge build --model" in message and "check_manifest=False" in message and "--no-manifest" in message
    if not TENSORRT_OK:  # without the manifest check the next thing needed is TensorRT itself
        assert f"needs TensorRT {SUPPORTED_TENSORRT} and pycuda" in _open_error(engine, check_manifest=False)
    unchecked = make_runner(engine, check_manifest=False)
    assert unchecked.max_batch is None  # no manifest to size batches from: the engine's profile, once open


def _pairs_file(folder: Path) -> Path:
    pairs = np.random.default_rng(1).integers(0, 256, (8, 2, 64, 64), dtype=np.uint8)
    np.save(folder / "pairs.npy", pairs)
    return folder / "pairs.npy"


def test_run_without_a_manifest_names_the_option_and_no_manifest_warns(tmp_path, engine_bytes, capsys):
    """`rrl-edge run` on an engine built elsewhere: refused naming --no-manifest (and `rrl-edge build`); with
    --no-manifest one warning line says nothing was checked, and here (no TensorRT) the next line is the
    TensorRT-not-installed error, exit 2."""
    from rrl_edge.cli import main

    engine = tmp_path / "foo.plan"
    engine.write_bytes(engine_bytes)
    data = _pairs_file(tmp_path)
    assert main(["run", "--engine", str(engine), "--data", str(data), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-manifest" in err[0] and "rrl-edge build --model" in err[0]
    if TENSORRT_OK:
        pytest.skip("TensorRT is here: the unchecked run goes on to TensorRT (the GPU tests run engines)")
    assert main(["run", "--engine", str(engine), "--data", str(data), "--quiet", "--no-manifest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "Traceback" not in "".join(err)
    assert err[0].startswith("rrl-edge run: warning:") and "--no-manifest" in err[0]
    assert all(word in err[0] for word in ("sha256", "TensorRT version", "GPU", "not checked"))
    assert err[1].startswith("rrl-edge run: error:") and f"needs TensorRT {SUPPORTED_TENSORRT}" in err[1]
    assert "TensorRT is not installed" in err[1] or "only the TensorRT type stubs" in err[1]  # stubs: mypy's


def test_no_manifest_is_for_tensorrt_engines_only(tmp_path, capsys):
    from rrl_edge.cli import main

    model = tmp_path / "rrl.onnx"
    model.write_bytes(b"an onnx model")
    assert main(["run", "--engine", str(model), "--data", str(_pairs_file(tmp_path)), "--no-manifest"]) == 2
    assert "--no-manifest: only TensorRT engines have an rrl-edge manifest" in capsys.readouterr().err


@pytest.mark.parametrize("text,what", [("{not json", "not a readable JSON"), ('{"format": "other"}', "not an rrl-edge engine manifest"),
                                       ("[1, 2]", "not an rrl-edge engine manifest")])
def test_unreadable_manifest(tmp_path, engine_bytes, text, what):
    engine = _write_engine(tmp_path, engine_bytes)
    manifest_path(engine).write_text(text)
    message = _open_error(engine)
    assert what in message and "rrl.plan.json" in message


def test_truncated_engine_is_refused_before_tensorrt(tmp_path, engine_bytes):
    engine = _write_engine(tmp_path, engine_bytes)
    engine.write_bytes(engine_bytes[: len(engine_bytes) // 2])  # an interrupted copy
    message = _open_error(engine)
    assert f"{engine}: {len(engine_bytes) // 2} bytes" in message and f"had {len(engine_bytes)}" in message
    assert "truncated" in message


def test_replaced_engine_is_refused_before_tensorrt(tmp_path, engine_bytes):
    engine = _write_engine(tmp_path, engine_bytes)
    engine.write_bytes(engine_bytes[::-1])  # same size, other bytes
    message = _open_error(engine)
    assert "sha256" in message and "replaced or corrupted" in message and "rrl-edge build" in message


def test_manifest_without_hash_is_refused(tmp_path, engine_bytes):
    engine = _write_engine(tmp_path, engine_bytes)
    manifest = json.loads(manifest_path(engine).read_text())
    del manifest["engine_sha256"]
    manifest_path(engine).write_text(json.dumps(manifest))
    assert "field 'engine_sha256' is missing" in _open_error(engine)


@pytest.mark.parametrize("field,value,expected", [
    ("engine_bytes", "50000", "expected int"), ("engine_bytes", True, "expected int"),
    ("engine_bytes", 1.5, "expected int"), ("tensorrt_version", 10.8, "expected str"),
    ("strongly_typed", "yes", "expected bool"), ("batch_max", None, "expected int"),
    ("inputs", {"vis": "[-1, 1, 64, 64]"}, "expected {name: [int, ...]}"), ("fpr95_at_export", [1], "dict or null"),
    ("format_version", "2", "format_version '2'"), ("precision", "int4", "expected one of"),
    ("batch_min", 32, "not 1 <= min <= opt <= max"), ("engine_sha256", "abc", "not a hex sha256"),
])
def test_manifest_fields_of_the_wrong_type_are_one_line_naming_the_file(tmp_path, engine_bytes, field, value, expected):
    engine = _write_engine(tmp_path, engine_bytes)
    _edit_manifest(engine, **{field: value})
    message = _open_error(engine)
    assert str(manifest_path(engine)) in message and expected in message and "\n" not in message


def test_the_command_line_refuses_a_mistyped_manifest_with_exit_2(tmp_path, engine_bytes, proof_pairs, capsys):
    from rrl_edge.cli import main

    engine = _write_engine(tmp_path, engine_bytes)
    _edit_manifest(engine, engine_bytes="lots")
    np.save(tmp_path / "pairs.npy", proof_pairs[:8])
    assert main(["run", "--engine", str(engine), "--data", str(tmp_path / "pairs.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(manifest_path(engine)) in err and "engine_bytes" in err and "Traceback" not in err


def test_an_engine_larger_than_its_manifest_is_refused_without_reading_it(tmp_path, engine_bytes, monkeypatch):
    """A 6 GB file named rrl.plan: refused by its size on disk (stat) before a byte is read."""
    engine = _write_engine(tmp_path, engine_bytes)
    with open(engine, "r+b") as fh:  # sparse: 6 GB on paper, nothing on disk
        fh.truncate(6 << 30)
    read = []
    original = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or original(self))
    message = _open_error(engine)
    assert "longer than built" in message and str(6 << 30) in message
    assert engine not in read


def test_an_onnx_model_given_to_the_tensorrt_backend_gets_a_safe_build_command(tmp_path):
    onnx = tmp_path / "rrl.onnx"
    onnx.write_bytes(b"an onnx model")
    from rrl_edge.runtime.tensorrt_runner import TensorRTRunner

    with pytest.raises(InputError) as info:
        TensorRTRunner(onnx).open()
    message = str(info.value)
    assert f"--model {onnx} --engine {tmp_path / 'rrl.plan'}" in message
    assert f"--engine {onnx}`" not in message and onnx.read_bytes() == b"an onnx model"


def test_the_builder_refuses_to_write_an_engine_over_an_onnx(tmp_path):
    from rrl_edge.errors import ExportError
    from rrl_edge.export.tensorrt_build import build_engine

    onnx = tmp_path / "rrl.onnx"
    onnx.write_bytes(b"an onnx model")
    with pytest.raises(ExportError, match="would write the engine over an ONNX model; use --engine .*rrl.plan"):
        build_engine(EngineRequest(onnx, onnx))
    assert onnx.read_bytes() == b"an onnx model"


@pytest.mark.parametrize("n,low,high,expected", [
    (37, 1, 16, [(0, 16, 16), (16, 32, 16), (32, 37, 5)]),
    (37, 8, 16, [(0, 16, 16), (16, 32, 16), (32, 37, 8)]),  # the last 5 padded to the minimum 8
    (3, 4, 4, [(0, 3, 4)]),
    (16, 16, 16, [(0, 16, 16)]),
    (1, 1, 1, [(0, 1, 1)]),
])
def test_chunks_honour_the_profile_minimum_and_maximum(n, low, high, expected):
    chunks = plan_chunks(n, low, high)
    assert chunks == expected
    assert all(low <= size <= high and size >= stop - start for start, stop, size in chunks)
    assert [i for start, stop, _ in chunks for i in range(start, stop)] == list(range(n))


def test_dtype_table_needs_no_trt_nptype_and_knows_bool_under_numpy_124():
    """trt.nptype of TensorRT 8.5 maps BOOL to np.bool, gone in numpy 1.24: the runner has its own table."""
    class Name:  # what a pybind11 enum member of tensorrt.DataType carries: its name
        def __init__(self, name):
            self.name = name
    assert numpy_dtype(Name("FLOAT")) == np.float32 and numpy_dtype(Name("HALF")) == np.float16
    assert numpy_dtype(Name("BOOL")) == np.bool_ and numpy_dtype(Name("INT8")) == np.int8
    assert numpy_dtype("DataType.INT32") == np.int32


def _source(path):
    import ast

    return ast.parse((ROOT / path).read_text())


def test_runner_and_builder_use_only_calls_every_supported_tensorrt_has():
    """Static: the named-tensor API (8.5+) only; no trt.nptype; no binding-index calls (gone in 10);
    no implicit calibrator or pycuda.autoinit; no platform_has_fast_fp16 (deprecated 10.5, gone in 11)."""
    import ast

    banned = {"nptype", "execute_async_v2", "execute_v2", "get_binding_name", "binding_is_input", "num_bindings",
              "get_binding_shape", "set_binding_shape", "get_binding_dtype", "get_profile_shape", "autoinit",
              "platform_has_fast_fp16", "int8_calibrator", "set_calibration_profile", "IInt8EntropyCalibrator2"}
    for path in ("runtime/tensorrt_runner.py", "export/tensorrt_build.py"):
        names = {n.attr for n in ast.walk(_source(path)) if isinstance(n, ast.Attribute)}
        names |= {a.name.split(".")[-1] for n in ast.walk(_source(path)) if isinstance(n, ast.Import) for a in n.names}
        assert not names & banned, (path, names & banned)


def test_every_cuda_event_the_runner_makes_blocks_instead_of_spinning():
    import ast

    calls = [n for n in ast.walk(_source("runtime/tensorrt_runner.py"))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "Event"]
    assert calls
    for call in calls:
        flags = {n.attr for n in ast.walk(call) if isinstance(n, ast.Attribute)}
        assert "BLOCKING_SYNC" in flags, ast.dump(call)
    stream_syncs = [n for n in ast.walk(_source("runtime/tensorrt_runner.py"))
                    if isinstance(n, ast.Attribute) and n.attr == "synchronize"
                    and isinstance(n.value, ast.Attribute) and n.value.attr == "_stream"]
    assert not stream_syncs  # stream.synchronize() spins unless the context blocks


@pytest.mark.parametrize("version,ok", [("8.4.3.1", False), ("8.5.2.2", True), ("8.6.1.6", True), ("10.3.0", True),
                                        ("10.13.0.35", True), ("11.0.0", True), ("11.4.1", True), ("12.0.0", False)])
def test_supported_tensorrt_versions_are_8_5_to_11(version, ok):
    if ok:
        check_tensorrt_version(version)
    else:
        with pytest.raises(InputError, match=f"TensorRT {version} is not supported: rrl-edge runs TensorRT 8.5 to 11.x"):
            check_tensorrt_version(version)


def test_pyproject_tensorrt_range_matches_the_runner():
    """pyproject's `tensorrt` extra says the one supported range (rrl_edge.manifest.SUPPORTED_TENSORRT)."""
    text = (ROOT / "pyproject.toml").read_text()
    assert f'"tensorrt{SUPPORTED_TENSORRT}"' in text, f"pyproject.toml's tensorrt extra must read tensorrt{SUPPORTED_TENSORRT}"


def test_the_install_hint_points_at_the_setup_script_and_says_the_true_range():
    """JetPack ships TensorRT's Python bindings (apt python3-libnvinfer), not pycuda; a bare `pip install
    tensorrt` resolves to whatever is newest. The hint names the setup script and the supported range."""
    assert "scripts/setup_device.sh" in INSTALL_HINT and "python3-libnvinfer" in INSTALL_HINT
    assert f"'tensorrt{SUPPORTED_TENSORRT}'" in INSTALL_HINT and "--system-site-packages" in INSTALL_HINT
    assert "pip install tensorrt pycuda" not in INSTALL_HINT and "JetPack ships them" not in INSTALL_HINT
    import re

    for path in ("runtime/tensorrt_runner.py", "export/tensorrt_build.py", "rrl_edge/manifest.py"):
        text = (ROOT / path).read_text()
        assert not re.search(r"tensorrt[<>=]=?\d", text.replace(f"tensorrt{SUPPORTED_TENSORRT}", "")
                             .replace('SUPPORTED_TENSORRT = "', "")), path  # no second copy of the range


@pytest.mark.parametrize("change,what", [
    ({"inputs": {"left": [-1, 1, 64, 64], "right": [-1, 1, 64, 64]}}, "'left'"),
    ({"inputs": {"vis": [-1, 1, 32, 32], "other": [-1, 1, 32, 32]}}, "32"),
    ({"inputs": {"vis": [-1, 2, 64, 64]}}, "[-1, 2, 64, 64]"),
    ({"output": "logits"}, "'logits'"),
])
def test_other_inputs_or_output_are_refused(tmp_path, engine_bytes, change, what):
    engine = _write_engine(tmp_path, engine_bytes)
    _edit_manifest(engine, **change)
    message = _open_error(engine)
    assert str(engine) in message and what in message and "rrl-edge build" in message


def test_another_tensorrt_version_or_gpu_is_refused(tmp_path, engine_bytes):
    engine = _write_engine(tmp_path, engine_bytes)
    manifest = EngineManifest.read(engine)
    check_environment = lambda engine, manifest, env: manifest.check_environment(engine, env)  # noqa: E731
    same_release = BUILT_WITH._replace(tensorrt_version="10.8.0.99")  # another build number of 10.8.0
    assert check_environment(engine, manifest, same_release) == []
    for version in ("10.7.0.23", "10.8.1.2", "8.6.1.6", "11.0.0"):
        with pytest.raises(InputError) as info:
            check_environment(engine, manifest, BUILT_WITH._replace(tensorrt_version=version))
        message = str(info.value)
        assert str(engine) in message and "TensorRT 10.8.0.43" in message and f"TensorRT {version}" in message
        assert "rebuild it on this machine with `rrl-edge build --model" in message
    orin = Environment(BUILT_WITH.tensorrt_version, "8.7", "Orin")
    with pytest.raises(InputError, match=r"compute capability 8\.6 .*Orin \(compute capability 8\.7\)"):
        check_environment(engine, manifest, orin)
    warnings = check_environment(engine, manifest, BUILT_WITH._replace(gpu_name="NVIDIA RTX A2000"))
    assert len(warnings) == 1 and "NVIDIA RTX A2000" in warnings[0]  # same architecture: runs, with a warning


def test_an_engine_passing_every_check_goes_to_tensorrt(tmp_path, engine_bytes):
    """Random bytes whose manifest matches: only TensorRT can refuse them (the GPU test below), here the
    runner gets as far as needing TensorRT and says so."""
    if TENSORRT_OK:
        pytest.skip("TensorRT and a GPU are here: test_tensorrt_refuses_a_corrupt_engine covers this")
    engine = _write_engine(tmp_path, engine_bytes)
    message = _open_error(engine)
    assert f"needs TensorRT {SUPPORTED_TENSORRT} and pycuda" in message and "scripts/setup_device.sh" in message


def test_the_command_line_reports_a_bad_engine_cleanly(tmp_path, engine_bytes, proof_pairs, capsys):
    from rrl_edge.cli import main

    engine = _write_engine(tmp_path, engine_bytes)
    engine.write_bytes(engine_bytes[:1000])
    np.save(tmp_path / "pairs.npy", proof_pairs[:8])
    assert main(["run", "--engine", str(engine), "--data", str(tmp_path / "pairs.npy"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "rrl-edge run: error:" in err and "truncated" in err and "Traceback" not in err


def test_empty_engine_file(tmp_path):
    engine = tmp_path / "rrl.plan"
    engine.write_bytes(b"")
    assert "the engine file is empty" in _open_error(engine, check_manifest=False)


def test_importing_the_runner_needs_no_torch():
    code = ("import sys, rrl_edge.runtime.tensorrt_runner, rrl_edge.manifest\n"
            "heavy = ('torch', 'onnx', 'onnxruntime', 'cv2', 'sklearn', 'tensorrt', 'pycuda', 'matplotlib')\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# ---- on a GPU with TensorRT: real engines, from the workstation's export folder only ----
# No torch or onnx on this side: a Jetson runs these with numpy, TensorRT, pycuda and pytest, on the files
# `rrl-edge export --int8 --out-dir deploy/` wrote (RRL_EDGE_DEPLOY, default deploy/), PyTorch's scores
# of the test pairs included.

@pytest.fixture(scope="module")
def deploy():
    if not TENSORRT_OK:
        pytest.skip(TENSORRT_REASON)
    from rrl_edge.contracts import REFERENCE

    folder = Path(os.environ.get("RRL_EDGE_DEPLOY", ROOT / "deploy"))
    if not (folder / REFERENCE).is_file():
        pytest.skip(f"no export folder at {folder}: run `rrl-edge export --int8 --out-dir deploy/` on a workstation "
                    "and copy deploy/ here (or set RRL_EDGE_DEPLOY)")
    return folder


@pytest.fixture(scope="module")
def reference(deploy):
    from rrl_edge.export.device_check import load_reference

    ref, pairs, labels, scores = load_reference(deploy)
    return ref, pairs, scores


@pytest.fixture(scope="module")
def engines(deploy, tmp_path_factory):
    """FP32 and INT8 (explicit Q/DQ on every TensorRT version) engines, profile 4..8..16: a minimum above 1
    so that short chunks must be padded."""
    from rrl_edge.contracts import FP32_ONNX, INT8_ONNX
    from rrl_edge.export.tensorrt_build import build_engine

    out = tmp_path_factory.mktemp("engines")
    paths = {}
    for name, onnx in (("fp32", FP32_ONNX), ("int8", INT8_ONNX)):
        paths[name] = out / f"{name}.plan"
        build_engine(EngineRequest(deploy / onnx, paths[name], BatchProfile(4, 8, 16), 256,
                                   timing_cache=out / "timing.cache"))
    return paths


@pytest.mark.gpu
@needs_tensorrt
def test_fp32_engine_matches_pytorch(engines, reference):
    from rrl_edge.runtime.runner import score_pairs

    _, pairs, ref_scores = reference
    with make_runner(engines["fp32"]) as runner:
        assert runner.max_batch == 16 and runner.precision == "fp32" and runner.backend == "tensorrt"
        scores = score_pairs(runner, pairs[:515], 64)  # 64 > 16: cut to the profile maximum; 515 = 32 x 16 + 3
    assert np.max(np.abs(scores - ref_scores[:515])) <= 1e-3


@pytest.mark.gpu
@needs_tensorrt
def test_int8_engine_decides_like_pytorch_and_runs_int8_kernels(engines, reference):
    """Agreement with PyTorch's decisions, and the engine inspector (every supported TensorRT, 8.5 included)
    shows an INT8 kernel for every convolution the Q/DQ graph quantizes (a float fallback would also agree)."""
    from rrl_edge.export.device_check import int8_kernels
    from rrl_edge.runtime.runner import score_pairs

    ref, pairs, ref_scores = reference
    with make_runner(engines["int8"]) as runner:
        assert runner.precision == "int8"
        scores = score_pairs(runner, pairs, 16)
        kernels = int8_kernels(runner.layer_information(), ref["int8_convs"])
    assert np.mean((scores > 0.5) == (ref_scores > 0.5)) >= 0.99
    if not kernels["checked"]:
        pytest.skip(f"INT8 kernels not checked: {kernels['why']} (parity above passed)")
    assert kernels["passed"], f"convolutions without an INT8 kernel: {kernels['not_int8']}, not in the engine: " \
                              f"{kernels['not_found']}"


@pytest.mark.gpu
@needs_tensorrt
def test_batches_are_split_at_the_profile_maximum_and_padded_to_its_minimum(engines, reference):
    from rrl_edge.contracts import split_pair_batch

    _, pairs, ref_scores = reference
    pairs, ref_scores = pairs[:64], ref_scores[:64]
    assert np.ptp(ref_scores) > 0.5  # matching and non-matching pairs: a misplaced score would show
    vis, other = split_pair_batch(pairs)
    with make_runner(engines["fp32"]) as runner:
        whole = runner.infer(vis[:37], other[:37])  # 16 + 16 + 5
        sizes, starts = [37, 5, 1, 3, 16, 17], [0, 0, 5, 6, 20, 40]  # split, smaller, below the minimum 4, max, max + 1
        batches = [(vis[s : s + n], other[s : s + n]) for s, n in zip(starts, sizes)]
        pieces = list(runner.infer_batches(iter(batches)))
    assert whole.shape == (37,) and np.max(np.abs(whole - ref_scores[:37])) <= 1e-3
    assert [len(p) for p in pieces] == sizes  # padding's scores dropped
    for got, start in zip(pieces, starts):
        assert np.max(np.abs(got - ref_scores[start : start + len(got)])) <= 1e-3


@pytest.mark.gpu
@needs_tensorrt
def test_close_frees_and_reopen_works(engines, reference):
    from rrl_edge.contracts import split_pair_batch

    vis, other = split_pair_batch(reference[1][:8])
    runner = make_runner(engines["fp32"], check_manifest=False)
    first = runner.open().infer(vis, other)
    runner.close()
    assert not runner.is_open
    with runner:
        assert np.allclose(runner.infer(vis, other), first, atol=1e-6)


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("corrupt", ["half", "onnx"])
def test_tensorrt_refuses_a_corrupt_engine(engines, deploy, tmp_path, corrupt):
    """Bytes that pass the manifest's size and hash (updated to match) but are no engine: TensorRT refuses."""
    good = engines["fp32"].read_bytes()
    data = good[: len(good) // 2] if corrupt == "half" else (deploy / "rrl.onnx").read_bytes()
    engine = tmp_path / "bad.plan"
    engine.write_bytes(data)
    manifest_path(engine).write_text(manifest_path(engines["fp32"]).read_text())
    _edit_manifest(engine, engine_bytes=len(data), engine_sha256=hashlib.sha256(data).hexdigest(), engine="bad.plan")
    message = _open_error(engine)
    assert str(engine) in message and "cannot load it: not a TensorRT engine" in message


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("change,what", [({"tensorrt_version": "8.5.1.7"}, "built with TensorRT 8.5.1.7"),
                                         ({"compute_capability": "1.0", "gpu_name": "Elsewhere"}, "compute capability 1.0")])
def test_engine_for_another_machine_is_refused(engines, tmp_path, change, what):
    engine = tmp_path / "rrl.plan"
    engine.write_bytes(engines["fp32"].read_bytes())
    manifest_path(engine).write_text(manifest_path(engines["fp32"]).read_text())
    _edit_manifest(engine, **change)
    assert what in _open_error(engine)


def _method(tree, name):
    import ast

    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def test_every_cuda_context_push_is_popped_on_every_path():
    """Static (pycuda needs a GPU): the runner pushes its context only in _active, which pops it in a
    ``finally``; _release detaches in a ``finally`` and then undoes pycuda's own unpopped push of the primary
    context (_pop_if_current, also in a ``finally``); a failed open releases without hiding its own error."""
    import ast

    tree = _source("runtime/tensorrt_runner.py")
    pushes = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
              and n.func.attr == "push"]
    active = _method(tree, "_active")
    assert len(pushes) == 1 and pushes[0] in list(ast.walk(active))
    tries = [n for n in ast.walk(active) if isinstance(n, ast.Try)]
    assert len(tries) == 1 and "cuda.Context.pop()" in [ast.unparse(x).strip() for x in tries[0].finalbody]
    assert ast.unparse(active.body[-1]) == ast.unparse(tries[0])  # the push is the statement just before it
    release = _method(tree, "_release")
    outer = next(n for n in release.body if isinstance(n, ast.Try))
    inner = next(n for n in outer.finalbody if isinstance(n, ast.Try))
    assert [ast.unparse(x) for x in inner.body] == ["context.detach()"]
    assert [ast.unparse(x) for x in inner.finalbody] == ["_pop_if_current(handle)"]
    open_ = _method(tree, "_open")
    handler = next(h for n in ast.walk(open_) if isinstance(n, ast.Try) for h in n.handlers)
    assert isinstance(handler.body[-1], ast.Raise) and handler.body[-1].exc is None  # the load's error, re-raised
    assert "self._release()" in ast.unparse(handler)


def test_the_inspector_is_used_on_every_supported_tensorrt():
    """Static: no version gate before the engine inspector (8.5's bindings have it), only a check that the
    bindings define it."""
    import inspect

    from rrl_edge.runtime.tensorrt_runner import TensorRTRunner

    source = inspect.getsource(TensorRTRunner.layer_information)
    assert "(8, 6)" not in source and "version_triple" not in source
    assert 'hasattr(engine, "create_engine_inspector")' in source


def _current_cuda_context() -> int:
    import ctypes

    current = ctypes.c_void_p()
    assert ctypes.CDLL("libcuda.so.1").cuCtxGetCurrent(ctypes.byref(current)) == 0
    return current.value or 0


@pytest.mark.gpu
@needs_tensorrt
def test_close_leaves_the_threads_cuda_context_as_it_found_it(engines, reference):
    """On the last GPU (a non-zero one where there are several): after close, no context of ours is current."""
    import pycuda.driver as cuda

    from rrl_edge.contracts import split_pair_batch

    cuda.init()
    device = cuda.Device.count() - 1
    before = _current_cuda_context()
    vis, other = split_pair_batch(reference[1][:4])
    engine = engines["fp32"]
    runner = make_runner(engine, check_manifest=False, device=device)
    try:
        runner.open().infer(vis, other)
    except InputError as exc:  # an engine built on GPU 0 may not load on another architecture
        pytest.skip(str(exc))
    finally:
        runner.close()
    assert _current_cuda_context() == before
