"""TensorRT engines from the exported ONNX, on the machine that will run them.

An engine is tied to one GPU and one TensorRT version, so it is built where it runs (a Jetson, a desktop
GPU) from the ONNX files an export wrote anywhere. One builder for TensorRT 8.5, 8.6 and 10.x (11 is refused
in one line, see rrl_edge.runtime.tensorrt_runner.check_tensorrt_version):

- TF32 is cleared on every build (``CLEARED_FLAGS``): TensorRT enables it by default, and it would run the
  FP32 layers (all of an FP32 engine, the layers an INT8 proof keeps float) with 10-bit mantissas on Ampere
  and newer GPUs. The manifest records the flags set and cleared.
- FP32: ``rrl.onnx`` (an FP32 engine must match the FP32 ONNX).
- FP16: ``rrl.onnx`` with BuilderFlag.FP16 (deprecated from 10.12 in favour of strongly typed FP16 ONNX,
  still honoured through 10.x; the flag is gone in 11, which is why 11 is refused). TensorRT may then run
  any layer in FP16 where that is faster, the float layers of an INT8+FP16 build included: such an engine is
  not the graph the export proved, and `rrl-edge device-check` measures its FPR95 on the device.
- INT8: always explicit: ``rrl.int8.onnx`` keeps the Q/DQ scales the export calibrated and proved on every
  test pair, on every version (8.5 supports explicit Q/DQ). No implicit calibrator: TensorRT's own
  calibration would pick INT8 wherever faster, also in the layers the export proved must stay float, and the
  engine would no longer be the graph whose FPR95 the manifest records. TensorRT 10 builds it as a strongly
  typed network (no precision flags: the Q/DQ and the ONNX types decide, the 10.x/11 way); 8.5/8.6, which
  have no strong typing, take BuilderFlag.INT8 (with Q/DQ in the graph TensorRT then follows the Q/DQ
  placement). INT8+FP16 (float layers in FP16) stays weakly typed with both flags on 8.5-10.x.

Not Polygraphy's loaders (README, Export): the device check must build engines with numpy, TensorRT and
pycuda only, and the version-dependent choices above (strong typing, TF32, flags) are the part that needs
care either way. Every build reuses a timing cache file (per TensorRT version and GPU), writes the engine
atomically and its manifest beside it (rrl_edge.manifest.EngineManifest). TensorRT is imported only inside
functions: every other module must import on machines without a GPU.
"""

from __future__ import annotations

import json
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from rrl_edge.atomic import atomic_write_bytes
from rrl_edge.contracts import CALIB_MANIFEST, INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE, REPORT, sha256_file
from rrl_edge.errors import ExportError
from rrl_edge.export.gpu import GpuInfo, cuda_devices
from rrl_edge.manifest import EngineManifest, engine_name_for, manifest_path, version_triple

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

__all__ = ["BatchProfile", "EngineRequest", "build_engine", "manifest_path", "tensorrt_status", "is_qdq_onnx"]


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes an engine accepts (min..max) and the one it is tuned for (opt)."""

    min: int = 1
    opt: int = 32
    max: int = 256

    def check(self) -> None:
        if self.min < 1 or not self.min <= self.opt <= self.max:
            raise ExportError(
                f"batch profile --min-batch {self.min} --opt-batch {self.opt} --max-batch {self.max}: "
                "need 1 <= min <= opt <= max"
            )


@dataclass(frozen=True)
class EngineRequest:
    onnx: Path
    engine: Path
    profile: BatchProfile = BatchProfile()
    workspace_mb: int = 1024
    fp16: bool = False
    timing_cache: Optional[Path] = None  # default: ~/.cache/rrl-edge/tensorrt/, one file per TensorRT and GPU


def tensorrt_status() -> Tuple[bool, str]:
    """(True, what will build) where TensorRT and a CUDA GPU exist; else (False, why not)."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, "TensorRT is not installed"
    if not hasattr(trt, "Builder"):  # tensorrt-stubs alone installs an importable, empty `tensorrt`
        return False, "only the TensorRT type stubs are installed, not TensorRT"
    gpus = cuda_devices()
    if not gpus:
        return False, f"TensorRT {trt.__version__} is installed but no CUDA GPU was found"
    return True, f"TensorRT {trt.__version__} on {gpus[0].name} (compute capability {gpus[0].compute_capability})"


def is_qdq_onnx(path: Path) -> bool:
    """Whether an ONNX file holds Q/DQ nodes: op types are stored verbatim, so no onnx package is needed."""
    data = path.read_bytes()
    return b"QuantizeLinear" in data or b"DequantizeLinear" in data


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


# Cleared on every build: TensorRT sets TF32 by default (8.5 through 10.x), which rounds the inputs of FP32
# convolutions and matrix products to 10-bit mantissas on Ampere and newer GPUs (Orin, RTX 30xx/40xx). The
# export proves FP32 ONNX to 1e-4 and INT8 with the layers it keeps float in FP32; TF32 would run those layers
# in a precision nothing measured.
CLEARED_FLAGS = ("TF32",)


@dataclass(frozen=True)
class _Plan:
    """What one build does, decided from the ONNX, the request and the TensorRT version."""

    parse: Path  # the ONNX TensorRT parses
    precision: str  # "fp32", "fp16", "int8", "int8+fp16"
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool

    @property
    def set_flags(self) -> Tuple[str, ...]:
        """The trt.BuilderFlag names the build sets (recorded in the manifest)."""
        return tuple(name for name, on in (("FP16", self.fp16_flag), ("INT8", self.int8_flag)) if on)

    @property
    def cleared_flags(self) -> Tuple[str, ...]:
        """The trt.BuilderFlag names the build clears: TF32 on every precision (CLEARED_FLAGS)."""
        return CLEARED_FLAGS


def _plan(request: EngineRequest, version: Tuple[int, ...]) -> _Plan:
    """Precision and network typing for ``request`` on TensorRT ``version`` (see the module docstring)."""
    major = version[0]
    if not (8, 5) <= tuple(version[:2]) < (11, 0):
        raise ExportError(f"TensorRT {'.'.join(map(str, version))} is not supported: rrl-edge builds with TensorRT "
                          "8.5 to 10.x (11 removed the weakly typed FP16 builds); pip install 'tensorrt>=8.5,<11'")
    if not is_qdq_onnx(request.onnx):
        return _Plan(request.onnx, "fp16" if request.fp16 else "fp32", False, request.fp16, False)
    if request.fp16:  # float layers in FP16 next to the INT8 ones: weakly typed, both flags (8.5-10.x)
        return _Plan(request.onnx, "int8+fp16", False, True, True)
    if major >= 10:
        return _Plan(request.onnx, "int8", True, False, False)
    return _Plan(request.onnx, "int8", False, False, True)


def _builder_flags() -> Dict[str, "trt.BuilderFlag"]:
    """The flags a plan names, spelled out so the type check sees each one (8.5 through 10.x have all three)."""
    import tensorrt as trt

    return {"TF32": trt.BuilderFlag.TF32, "FP16": trt.BuilderFlag.FP16, "INT8": trt.BuilderFlag.INT8}


def _network_flags(version: Tuple[int, ...], strongly_typed: bool) -> int:
    import tensorrt as trt

    if strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if version[0] < 10:  # explicit batch is the only mode from TensorRT 10 on (the flag is deprecated there)
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _parse(builder: "trt.Builder", logger: "trt.ILogger", plan: _Plan, version: Tuple[int, ...]) -> "trt.INetworkDefinition":
    import tensorrt as trt

    network = builder.create_network(_network_flags(version, plan.strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.parse)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT {version[0]}.{version[1]} could not parse {plan.parse}: {errors}")
    names = tuple(network.get_input(i).name for i in range(network.num_inputs))
    if names != INPUT_NAMES:
        raise ExportError(f"{plan.parse}: inputs are {names}, expected {INPUT_NAMES} (not an rrl-edge export?)")
    return network


def _profile(builder: "trt.Builder", low: int, opt: int, high: int) -> "trt.IOptimizationProfile":
    import tensorrt as trt

    profile = builder.create_optimization_profile()
    for name in INPUT_NAMES:
        shapes = (trt.Dims4(batch, 1, PATCH_SIZE, PATCH_SIZE) for batch in (low, opt, high))
        profile.set_shape(name, *shapes)
    return profile


def default_timing_cache(trt_version: str, gpu: GpuInfo) -> Path:
    return Path.home() / ".cache" / "rrl-edge" / "tensorrt" / f"timing-trt{trt_version}-sm{gpu.compute_capability}.cache"


def _attach_timing_cache(config: "trt.IBuilderConfig", path: Path) -> bool:
    """Load ``path`` into the build (True) or start an empty cache when it is missing or from elsewhere."""
    blob = path.read_bytes() if path.is_file() else b""
    if config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
        return bool(blob)
    log.warning("timing cache %s was made by another GPU or TensorRT version; starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def build_engine(request: EngineRequest) -> EngineManifest:
    """Build the engine of ``request``, write it and its manifest; return the manifest."""
    request.profile.check()
    if request.workspace_mb < 1:
        raise ExportError(f"--workspace {request.workspace_mb}: must be at least 1 MB")
    if not request.onnx.is_file():
        raise ExportError(f"--onnx {request.onnx}: file not found")
    if request.engine.is_dir():
        raise ExportError(f"--engine {request.engine}: is a folder, expected a file name")
    if request.engine.suffix == ".onnx" or request.engine.resolve() == request.onnx.resolve():
        raise ExportError(f"--engine {request.engine}: would write the engine over an ONNX model; "
                          f"use --engine {engine_name_for(request.engine)}")
    ok, status = tensorrt_status()
    if not ok:
        raise ExportError(f"cannot build a TensorRT engine here: {status}; "
                          "run `rrl-edge build` on the machine whose GPU will run the engine")
    import tensorrt as trt

    version = version_triple(trt.__version__)
    gpu = cuda_devices()[0]
    plan = _plan(request, version)
    log.info("building %s engine from %s with %s", plan.precision, plan.parse, status)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse(builder, logger, plan, version)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    p = request.profile
    config.add_optimization_profile(_profile(builder, p.min, p.opt, p.max))
    flags = _builder_flags()
    for name in plan.cleared_flags:  # TF32, whatever the precision: see CLEARED_FLAGS
        config.clear_flag(flags[name])
    for name in plan.set_flags:  # never on a strongly typed network (TensorRT refuses precision flags there)
        config.set_flag(flags[name])
    # per-layer formats in the engine inspector (the device check's INT8-kernel check); costs no speed
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    timing_cache = request.timing_cache or default_timing_cache(trt.__version__, gpu)
    reused = _attach_timing_cache(config, timing_cache)

    started = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {plan.parse}; its log above says why")
    engine_bytes = bytes(memoryview(serialized))
    seconds = time.time() - started
    atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))

    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ExportError("TensorRT built an engine it cannot load back")
    io_names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if sorted(io_names) != sorted((*INPUT_NAMES, OUTPUT_NAME)):
        raise ExportError(f"the engine's tensors are {io_names}, expected {[*INPUT_NAMES, OUTPUT_NAME]}")

    manifest = engine_manifest(request, plan, trt.__version__, gpu, engine_bytes, seconds, timing_cache, reused)
    atomic_write_bytes(request.engine, engine_bytes)
    manifest.write(request.engine)
    return manifest


def engine_manifest(
    request: EngineRequest,
    plan: _Plan,
    trt_version: str,
    gpu: GpuInfo,
    engine_bytes: bytes,
    seconds: float = 0.0,
    timing_cache: Optional[Path] = None,
    timing_cache_reused: bool = False,
) -> EngineManifest:
    """What the engine is and where it came from, with the FPR95 the export measured for its ONNX."""
    onnx_dir = request.onnx.parent
    report = _read_json(onnx_dir / REPORT) or {}
    calib = _read_json(onnx_dir / CALIB_MANIFEST) or {}
    int8 = plan.precision.startswith("int8")
    fpr95 = report.get("fpr95")
    measured = fpr95.get("tensorrt-qdq" if int8 else "onnx-fp32") if isinstance(fpr95, dict) else None
    digest = calib.get("sha256") if int8 else None
    return EngineManifest(
        engine=request.engine.name,
        engine_bytes=len(engine_bytes),
        engine_sha256=hashlib.sha256(engine_bytes).hexdigest(),
        tensorrt_version=trt_version,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=plan.precision,
        strongly_typed=plan.strongly_typed,
        builder_flags=list(plan.set_flags),
        cleared_flags=list(plan.cleared_flags),
        batch_min=request.profile.min,
        batch_opt=request.profile.opt,
        batch_max=request.profile.max,
        onnx_file=request.onnx.name,
        onnx_sha256=sha256_file(request.onnx),
        workspace_mb=request.workspace_mb,
        calibration_sha256=digest if isinstance(digest, str) else None,
        fpr95_at_export=measured if isinstance(measured, dict) else None,
        timing_cache=str(timing_cache) if timing_cache is not None else None,
        timing_cache_reused=timing_cache_reused,
        build_seconds=round(seconds, 1),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
