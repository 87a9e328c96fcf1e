"""TensorRT engines from the exported ONNX, on the machine that will run them.

An engine is tied to one GPU and one TensorRT version, so it is built where it runs (a Jetson, a desktop
GPU) from the ONNX files an export wrote anywhere. One builder for TensorRT 8.5, 8.6, 10.x and 11.x (the range
is rrl_edge.manifest.SUPPORTED_TENSORRT):

- TF32 is cleared on every build (``CLEARED_FLAGS``): TensorRT enables it by default, and it would run the
  FP32 layers (all of an FP32 engine, the layers an INT8 proof keeps float) with 10-bit mantissas on Ampere
  and newer GPUs. TensorRT 11 keeps the flag (it governs FP32-typed layers of strongly typed networks). The
  manifest records the flags set and cleared.
- FP32: ``rrl.onnx`` (an FP32 engine must match the FP32 ONNX).
- FP16: ``rrl.onnx`` with BuilderFlag.FP16 (deprecated from 10.12 in favour of strongly typed FP16 ONNX,
  honoured through 10.x). TensorRT may then run any layer in FP16 where that is faster, the float layers of
  an INT8+FP16 build included: such an engine is not the graph the export proved, and `rrl-edge
  device-check` measures its FPR95 on the device. TensorRT 11 removed the flag ("Removed Python APIs",
  TensorRT 10.x to 11.x migration guide: BuilderFlag.FP16 -> strong typing with an FP16 ONNX), and the
  export writes no FP16 ONNX, so FP16 is refused there, in one line.
- INT8: always explicit: ``rrl.int8.onnx`` keeps the Q/DQ scales the export calibrated and proved on every
  test pair, on every version (8.5 supports explicit Q/DQ). No implicit calibrator: TensorRT's own
  calibration would pick INT8 wherever faster, also in the layers the export proved must stay float, and the
  engine would no longer be the graph whose FPR95 the manifest records. TensorRT 10 and 11 build it as a
  strongly typed network (no precision flags: the Q/DQ and the ONNX types decide; 11 has no other mode and
  no BuilderFlag.INT8); 8.5/8.6, which have no strong typing, take BuilderFlag.INT8 (with Q/DQ in the graph
  TensorRT then follows the Q/DQ placement). INT8+FP16 (float layers in FP16) stays weakly typed with both
  flags on 8.5-10.x.
- Network creation: EXPLICIT_BATCH on 8.x (implicit batch is the default there); nothing on 10.x weakly
  typed (explicit batch is the only mode); STRONGLY_TYPED on 10.x strongly typed; no flag on 11, where
  EXPLICIT_BATCH is gone and STRONGLY_TYPED is deprecated and ignored (every network is strongly typed).
- DLA (``dla_core``, see ``_dla_plan``): FP16 or INT8 on one DLA core of a Jetson, with GPU fallback for the
  layers the DLA cannot run, a fixed batch, and the DLA / GPU split recorded in the manifest.

Not Polygraphy's loaders (docs/int8.md): the device check must build engines with numpy, TensorRT and
pycuda only, and the version-dependent choices above (strong typing, TF32, flags) are the part that needs
care either way. Every build reuses a timing cache file (per TensorRT version and GPU), writes the engine
atomically and its manifest beside it (rrl_edge.manifest.EngineManifest). TensorRT is imported only inside
functions: every other module must import on machines without a GPU.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from rrl_edge.atomic import atomic_write_bytes
from rrl_edge.contracts import CALIB_MANIFEST, INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE, REPORT, sha256_file
from rrl_edge.errors import ExportError, InputError
from rrl_edge.fpr95_table import FPR95Table
from rrl_edge.export.gpu import GpuInfo, cuda_devices
from rrl_edge.manifest import (
    SUPPORTED_TENSORRT, TENSORRT_INSTALL_HINT, EngineManifest, engine_name_for, hidden_tensorrt_message,
    manifest_path, supported_range, supported_text, system_tensorrt, version_triple,
)

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

__all__ = ["BatchProfile", "EngineRequest", "build_engine", "manifest_path", "tensorrt_status", "is_qdq_onnx",
           "timing_cache_name"]


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
    dla_core: Optional[int] = None  # build for this DLA core (a Jetson's), GPU fallback for the rest

    def built_profile(self) -> BatchProfile:
        """The profile the engine gets: the requested one, or on a DLA the fixed batch --opt-batch (DLA has no
        dynamic dimensions: "the profile's min, max, and opt values must be equal", TensorRT's DLA Supported
        Layers and Restrictions)."""
        if self.dla_core is None:
            return self.profile
        return BatchProfile(self.profile.opt, self.profile.opt, self.profile.opt)


# ---- why TensorRT is not usable here, in words a user can act on ----

def _gpu_here() -> bool:
    """An NVIDIA GPU on this machine, whether or not this Python can use it: a desktop driver (nvidia-smi,
    /proc/driver/nvidia), a Jetson's (/dev/nvhost-*), or any device the CUDA driver reports."""
    return bool(shutil.which("nvidia-smi") or os.path.isdir("/proc/driver/nvidia") or glob.glob("/dev/nvhost-*")
                or cuda_devices())


def missing_tensorrt_reason(gpu_here: bool, system_tensorrt: Optional[str], python: str = sys.executable) -> str:
    """Why TensorRT cannot be imported, from what is on the machine (kept pure so every case is tested)."""
    if not gpu_here:
        return ("TensorRT is not installed and this machine has no NVIDIA GPU; run `rrl-edge build` on the machine "
                "whose GPU will run the engine")
    if system_tensorrt:
        return hidden_tensorrt_message(system_tensorrt, python)
    return f"this machine has a GPU but TensorRT is not installed for {python}; {TENSORRT_INSTALL_HINT}"


def tensorrt_status() -> Tuple[bool, str]:
    """(True, what will build) where TensorRT and a CUDA GPU exist; else (False, why not and what to do)."""
    try:
        import tensorrt as trt
    except ImportError:
        return False, missing_tensorrt_reason(_gpu_here(), system_tensorrt())
    if not hasattr(trt, "Builder"):  # tensorrt-stubs alone installs an importable, empty `tensorrt`
        if _gpu_here():
            return False, f"only the TensorRT type stubs are installed, not TensorRT; {TENSORRT_INSTALL_HINT}"
        return False, ("only the TensorRT type stubs are installed, not TensorRT, and this machine has no NVIDIA "
                       "GPU; run `rrl-edge build` on the machine whose GPU will run the engine")
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


def _measured_fpr95(report: Dict[str, Any], artifact: str) -> Optional[Dict[str, Any]]:
    """The FPR95Table JSON (rrl_edge.fpr95_table) the export report holds for ``artifact``, also from a report
    written by an older version (its other shape, pair counts from proof_data); None where it has none."""
    section = report.get("fpr95")
    if not isinstance(section, dict) or artifact not in section:
        return None
    proof = report.get("proof_data")
    pairs = proof.get("pairs") if isinstance(proof, dict) else None
    try:
        return FPR95Table.from_json(section[artifact], pairs if isinstance(pairs, dict) else None,
                                    f"export report [fpr95][{artifact}]").to_json()
    except InputError:
        return None


# Cleared on every build: TensorRT sets TF32 by default (8.5 through 11.x), which rounds the inputs of FP32
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
    dla_core: Optional[int] = None

    @property
    def set_flags(self) -> Tuple[str, ...]:
        """The trt.BuilderFlag names the build sets (recorded in the manifest)."""
        named = (("FP16", self.fp16_flag), ("INT8", self.int8_flag), ("GPU_FALLBACK", self.dla_core is not None))
        return tuple(name for name, on in named if on)

    @property
    def cleared_flags(self) -> Tuple[str, ...]:
        """The trt.BuilderFlag names the build clears: TF32 on every precision (CLEARED_FLAGS)."""
        return CLEARED_FLAGS


def _plan(request: EngineRequest, version: Tuple[int, ...]) -> _Plan:
    """Precision and network typing for ``request`` on TensorRT ``version`` (see the module docstring)."""
    major = version[0]
    low, high = supported_range()
    if not low <= tuple(version[:2]) < high:
        raise ExportError(f"TensorRT {'.'.join(map(str, version))} is not supported: rrl-edge builds with TensorRT "
                          f"{supported_text()} (tensorrt{SUPPORTED_TENSORRT}); {TENSORRT_INSTALL_HINT}")
    qdq = is_qdq_onnx(request.onnx)
    if request.dla_core is not None:
        return _dla_plan(request, version, qdq)
    if major >= 11:
        if request.fp16:
            raise ExportError(f"--fp16: TensorRT {'.'.join(map(str, version))} has no FP16 builder flag (TensorRT 11 "
                              "builds strongly typed networks only; FP16 needs an FP16 ONNX, which rrl-edge export "
                              f"does not write); build FP32 or INT8 ({request.onnx.name}) here, or FP16 with "
                              "TensorRT 8.5-10.x")
        return _Plan(request.onnx, "int8" if qdq else "fp32", True, False, False)
    if not qdq:
        return _Plan(request.onnx, "fp16" if request.fp16 else "fp32", False, request.fp16, False)
    if request.fp16:  # float layers in FP16 next to the INT8 ones: weakly typed, both flags (8.5-10.x)
        return _Plan(request.onnx, "int8+fp16", False, True, True)
    if major >= 10:
        return _Plan(request.onnx, "int8", True, False, False)
    return _Plan(request.onnx, "int8", False, False, True)


def _dla_plan(request: EngineRequest, version: Tuple[int, ...], qdq: bool) -> _Plan:
    """A DLA build: weakly typed with precision flags, on TensorRT 8.5-10.x only.

    - The DLA runs FP16 and INT8 only ("DLA support is currently limited to networks running in FP16 and INT8
      mode", TensorRT Developer Guide, Working with DLA): FP32 is refused; ``--fp16`` is needed for rrl.onnx.
    - Weakly typed, with BuilderFlag.FP16/INT8, never STRONGLY_TYPED: on 8.5-10.x the precision flags are how
      a layer is told it may run on the DLA at all (layers left FP32 are switched to the GPU: TensorRT's
      "DLA only supports FP16 and Int8 precision type. Switching ... device type to GPU"), and TensorRT
      documents DLA with strongly typed networks only from 11.4.1 on ("Strongly Typed Networks for DLA").
    - INT8 takes INT8 + FP16: the layers the Q/DQ graph keeps float would otherwise be FP32 and leave the DLA,
      so they run FP16 on it; the engine is therefore "int8+fp16", not the graph the export proved, and the
      device check measures its FPR95. Q/DQ (explicit quantization) itself is not what DLA was built for:
      NVIDIA says DLA supports implicit quantization (calibrated scales) and not QAT/Q/DQ graphs
      (NVIDIA/TensorRT#2222; NVIDIA/Model-Optimizer#1661, 2026: "DLA still only supports IQ"), and this
      project refuses implicit calibration (module docstring). Expect the Q/DQ layers on the GPU: the
      manifest's dla_layers / gpu_fallback_layers say how much of the network TensorRT put on the DLA.
    - TensorRT 11 has no precision flags; its DLA builds need FP16/INT8-typed ONNX and are not supported here.
    """
    if version[0] >= 11:
        raise ExportError(f"--dla-core: TensorRT {'.'.join(map(str, version))} builds DLA engines only from FP16 or "
                          "INT8 typed ONNX (strong typing, no precision flags), which rrl-edge export does not "
                          "write; build DLA engines with TensorRT 8.5-10.x (JetPack 5 or 6)")
    if qdq:
        return _Plan(request.onnx, "int8+fp16", False, True, True, request.dla_core)
    if not request.fp16:
        raise ExportError(f"--dla-core {request.dla_core}: the DLA runs FP16 and INT8 only, not FP32; add --fp16 for "
                          f"{request.onnx.name}, or give --model rrl.int8.onnx")
    return _Plan(request.onnx, "fp16", False, True, False, request.dla_core)


def _builder_flags(names: Tuple[str, ...]) -> Dict[str, "trt.BuilderFlag"]:
    """The trt.BuilderFlag of every name a plan uses; ExportError naming the one this TensorRT lacks."""
    import tensorrt as trt

    flags = {}
    for name in names:
        flag = getattr(trt.BuilderFlag, name, None)
        if flag is None:
            raise ExportError(f"TensorRT {trt.__version__} has no BuilderFlag.{name}, which this build needs; "
                              f"rrl-edge builds with TensorRT {supported_text()}")
        flags[name] = flag
    return flags


def _network_flags(version: Tuple[int, ...], strongly_typed: bool) -> int:
    import tensorrt as trt

    if version[0] >= 11:  # always strongly typed; EXPLICIT_BATCH removed, STRONGLY_TYPED deprecated and ignored
        return 0
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
        # trt.Dims from a list (every version; Dims4 lives in NvInferLegacyDims.h): (batch, 1, 64, 64)
        shapes = (trt.Dims([batch, 1, PATCH_SIZE, PATCH_SIZE]) for batch in (low, opt, high))
        profile.set_shape(name, *shapes)
    return profile


@dataclass(frozen=True)
class DlaPlacement:
    """Which network layers TensorRT says can run on the DLA (before fusion; GPU_FALLBACK runs the rest)."""

    core: int
    dla_layers: int
    fallback: List[str] = field(default_factory=list)


def _use_dla(builder: "trt.Builder", config: "trt.IBuilderConfig", network: "trt.INetworkDefinition", core: int,
             batch: int) -> DlaPlacement:
    """Point the build at DLA core ``core`` (default device DLA; GPU_FALLBACK is among the plan's flags) and
    record, per network layer, config.can_run_on_DLA (IBuilderConfig.canRunOnDLA, 8.5 through 10.x)."""
    import tensorrt as trt

    cores = int(builder.num_DLA_cores)
    if not 0 <= core < cores:
        raise ExportError(f"--dla-core {core}: TensorRT sees {cores} DLA core(s) on this machine"
                          + (f" (0..{cores - 1})" if cores else " (a Jetson Xavier or Orin has them; desktop GPUs do not)"))
    limit = int(getattr(builder, "max_DLA_batch_size", 0) or 0)
    if limit and batch > limit:
        raise ExportError(f"--opt-batch {batch}: the DLA takes batches of at most {limit}")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = core
    fallback: List[str] = []
    count = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if config.can_run_on_DLA(layer):
            count += 1
        else:
            fallback.append(str(layer.name))
    return DlaPlacement(core, count, fallback)


def timing_cache_name(trt_version: str, gpu: GpuInfo) -> str:
    """The timing cache's file name for one TensorRT version and GPU architecture: a cache from another
    TensorRT (a JetPack upgrade) or GPU is never offered to a build, which would discard it anyway."""
    return f"timing-trt{trt_version}-sm{gpu.compute_capability}.cache"


def default_timing_cache(trt_version: str, gpu: GpuInfo) -> Path:
    return Path.home() / ".cache" / "rrl-edge" / "tensorrt" / timing_cache_name(trt_version, gpu)


def timing_cache_in(folder: Path) -> Path:
    """``folder``'s timing cache for the installed TensorRT and the first GPU (call where TensorRT is)."""
    import tensorrt as trt

    return folder / timing_cache_name(trt.__version__, cuda_devices()[0])


def _attach_timing_cache(config: "trt.IBuilderConfig", path: Path) -> bool:
    """Load ``path`` into the build (True) or start an empty cache when it is missing or from elsewhere."""
    blob = path.read_bytes() if path.is_file() else b""
    if config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False):
        return bool(blob)
    log.warning("timing cache %s was made by another GPU or TensorRT version; starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def _check_request(request: EngineRequest) -> None:
    request.profile.check()
    if request.workspace_mb < 1:
        raise ExportError(f"--workspace {request.workspace_mb}: must be at least 1 MB")
    if request.dla_core is not None and request.dla_core < 0:
        raise ExportError(f"--dla-core {request.dla_core}: DLA cores are numbered from 0")
    if not request.onnx.is_file():
        raise ExportError(f"--model {request.onnx}: file not found")
    if request.engine.is_dir():
        raise ExportError(f"--engine {request.engine}: is a folder, expected a file name")
    if request.engine.suffix == ".onnx" or request.engine.resolve() == request.onnx.resolve():
        raise ExportError(f"--engine {request.engine}: would write the engine over an ONNX model; "
                          f"use --engine {engine_name_for(request.engine)}")


def build_engine(request: EngineRequest) -> EngineManifest:
    """Build the engine of ``request``, write it and its manifest; return the manifest."""
    _check_request(request)
    ok, status = tensorrt_status()
    if not ok:
        raise ExportError(f"cannot build a TensorRT engine here: {status}")
    import tensorrt as trt

    version = version_triple(trt.__version__)
    gpu = cuda_devices()[0]
    plan = _plan(request, version)
    p = request.built_profile()
    log.info("building %s engine from %s with %s", plan.precision, plan.parse, status)
    if plan.dla_core is not None:
        log.info("DLA core %d takes one batch size: building for batch %d (--opt-batch; --min-batch and --max-batch "
                 "are not used)", plan.dla_core, p.opt)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = _parse(builder, logger, plan, version)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, request.workspace_mb << 20)
    config.add_optimization_profile(_profile(builder, p.min, p.opt, p.max))
    flags = _builder_flags(plan.cleared_flags + plan.set_flags)
    for name in plan.cleared_flags:  # TF32, whatever the precision: see CLEARED_FLAGS
        config.clear_flag(flags[name])
    for name in plan.set_flags:  # never on a strongly typed network (TensorRT refuses precision flags there)
        config.set_flag(flags[name])
    placement = _use_dla(builder, config, network, plan.dla_core, p.opt) if plan.dla_core is not None else None
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

    manifest = engine_manifest(request, plan, trt.__version__, gpu, engine_bytes, seconds, timing_cache, reused,
                               placement)
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
    placement: Optional[DlaPlacement] = None,
) -> EngineManifest:
    """What the engine is and where it came from, with the FPR95 the export measured for its ONNX."""
    onnx_dir = request.onnx.parent
    report = _read_json(onnx_dir / REPORT) or {}
    calib = _read_json(onnx_dir / CALIB_MANIFEST) or {}
    int8 = plan.precision.startswith("int8")
    measured = _measured_fpr95(report, "tensorrt-qdq" if int8 else "onnx-fp32")
    digest = calib.get("sha256") if int8 else None
    profile = request.built_profile()
    dla: Dict[str, Any] = {} if placement is None else {
        "dla_core": placement.core, "dla_layers": placement.dla_layers,
        "gpu_fallback_layers": len(placement.fallback), "gpu_fallback_names": list(placement.fallback)}
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
        batch_min=profile.min,
        batch_opt=profile.opt,
        batch_max=profile.max,
        onnx_file=request.onnx.name,
        onnx_sha256=sha256_file(request.onnx),
        workspace_mb=request.workspace_mb,
        calibration_sha256=digest if isinstance(digest, str) else None,
        fpr95_at_export=measured,
        timing_cache=str(timing_cache) if timing_cache is not None else None,
        timing_cache_reused=timing_cache_reused,
        build_seconds=round(seconds, 1),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **dla,
    )
