"""TensorRT engines from the exported ONNX, on the machine that will run them.

An engine is tied to one GPU and one TensorRT version, so it is built where it runs (a Jetson, a desktop
GPU) from the ONNX files an export wrote anywhere. What the build does depends on the TensorRT there:

- FP32 / FP16: ``rrl.onnx`` with an optimization profile for the batch; FP16 through the builder flag
  (TensorRT 8.5-10.x; TensorRT 11 removed the flag: precision comes from the ONNX types there).
- INT8, explicit (the default from TensorRT 8.6 on): ``rrl.int8.onnx`` keeps its Q/DQ scales. TensorRT 10
  and later get a strongly typed network, where precision flags are not allowed; on TensorRT 10 with
  ``fp16`` the network stays weakly typed with the INT8 and FP16 flags, so the float layers may run in
  FP16 (strong typing would keep them FP32). TensorRT 8.6 takes the INT8 flag.
- INT8, implicit (the default on TensorRT 8.5, JetPack 5): TensorRT calibrates ``rrl.onnx`` itself with an
  entropy calibrator fed through pycuda from the export's calibration pairs (``rrl.calib.npy``), and keeps
  the scales in a calibration cache file so the next build skips calibration.

Every build reuses a timing cache file (per TensorRT version and GPU), writes the engine atomically and
a manifest beside it (``rrl.plan.json``). TensorRT and pycuda are imported only inside functions: every
other module must import on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from rrl_edge.atomic import atomic_write_bytes, write_json
from rrl_edge.errors import ExportError
from rrl_edge.contracts import (
    CALIB_MANIFEST,
    CALIB_SAMPLES,
    FP32_ONNX,
    REPORT,
    sha256_file,
)
from rrl_edge.export.gpu import GpuInfo, cuda_devices
from rrl_edge.contracts import INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

INT8_MODES = ("auto", "explicit", "implicit")
CALIBRATION_BATCH = 32
MANIFEST_FORMAT = "rrl-edge-engine"


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
    int8_mode: str = "auto"
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


def manifest_path(engine: Path) -> Path:
    return engine.with_name(engine.name + ".json")


def is_qdq_onnx(path: Path) -> bool:
    """Whether an ONNX file holds Q/DQ nodes: op types are stored verbatim, so no onnx package is needed."""
    data = path.read_bytes()
    return b"QuantizeLinear" in data or b"DequantizeLinear" in data


def _version(version: str) -> Tuple[int, int]:
    major, minor = (int(x) for x in re.findall(r"\d+", version)[:2])
    return major, minor


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


@dataclass(frozen=True)
class _Plan:
    """What one build does, decided from the ONNX, the request and the TensorRT version."""

    parse: Path  # the ONNX TensorRT parses
    precision: str  # "fp32", "fp16", "int8", "int8+fp16"
    int8: str  # "", "explicit", "implicit"
    strongly_typed: bool
    fp16_flag: bool


def _plan(request: EngineRequest, version: Tuple[int, int]) -> _Plan:
    if request.int8_mode not in INT8_MODES:
        raise ExportError(f"--int8-mode {request.int8_mode!r}: expected one of {', '.join(INT8_MODES)}")
    major = version[0]
    fp16_flag = request.fp16 and major < 11
    if request.fp16 and major >= 11:
        log.warning("TensorRT %d.%d has no FP16 builder flag: the engine runs in the ONNX's own types", *version)
    mode = request.int8_mode
    precision = "int8+fp16" if fp16_flag else "int8"
    if not is_qdq_onnx(request.onnx):
        if mode == "explicit":
            raise ExportError(f"--int8-mode explicit: {request.onnx} has no Q/DQ nodes (pass the export's rrl.int8.onnx)")
        if mode == "auto":
            return _Plan(request.onnx, "fp16" if fp16_flag else "fp32", "", False, fp16_flag)
        parse = request.onnx  # implicit INT8 asked for on an FP32 graph: TensorRT calibrates this very graph
    else:
        if mode == "auto":
            mode = "implicit" if version < (8, 6) else "explicit"
        parse = request.onnx.with_name(FP32_ONNX)
        if mode == "implicit" and not parse.is_file():
            raise ExportError(f"implicit INT8 calibrates the FP32 graph {parse}, which is not beside {request.onnx}")
    if mode == "implicit":
        if major >= 11:
            raise ExportError(f"TensorRT {major}.{version[1]} removed implicit INT8 calibration; use --int8-mode explicit")
        return _Plan(parse, precision, "implicit", False, fp16_flag)
    strongly_typed = major >= 11 or (major == 10 and not fp16_flag)
    return _Plan(request.onnx, precision, "explicit", strongly_typed, fp16_flag)


def _network_flags(version: Tuple[int, int], strongly_typed: bool) -> int:
    import tensorrt as trt

    if strongly_typed:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if version[0] < 10:  # explicit batch is the only mode from TensorRT 10 on, and the flag is gone in 11
        return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    return 0


def _parse(builder: "trt.Builder", logger: "trt.ILogger", plan: _Plan, version: Tuple[int, int]) -> "trt.INetworkDefinition":
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


def _calibration_pairs(onnx_dir: Path) -> Tuple[np.ndarray, str]:
    """The export's calibration pairs and their sha256 (checked against the export's manifest)."""
    samples = onnx_dir / CALIB_SAMPLES
    if not samples.is_file():
        raise ExportError(f"implicit INT8 needs the calibration pairs {samples}, written by `rrl-edge export --int8`")
    digest = sha256_file(samples)
    manifest = _read_json(onnx_dir / CALIB_MANIFEST)
    if manifest is not None and manifest.get("sha256") not in (None, digest):
        raise ExportError(f"{samples} does not match the sha256 in {onnx_dir / CALIB_MANIFEST}: the pairs were changed")
    pairs = np.load(samples, allow_pickle=False)
    if pairs.ndim != 4 or pairs.shape[1:] != (2, PATCH_SIZE, PATCH_SIZE) or pairs.dtype != np.uint8:
        raise ExportError(f"{samples}: expected uint8 pairs (N, 2, {PATCH_SIZE}, {PATCH_SIZE}), got {pairs.dtype} {pairs.shape}")
    if len(pairs) < CALIBRATION_BATCH:
        raise ExportError(f"{samples}: {len(pairs)} pairs, implicit calibration needs at least {CALIBRATION_BATCH}")
    return pairs, digest


def _entropy_calibrator(pairs: np.ndarray, cache: Path) -> "trt.IInt8EntropyCalibrator2":
    """TensorRT's entropy calibrator over ``pairs``, copied to the GPU with pycuda, cached in ``cache``."""
    import pycuda.autoinit  # noqa: F401  (the CUDA context of the copies)
    import pycuda.driver as cuda
    import tensorrt as trt

    batch = CALIBRATION_BATCH

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.next = 0
            nbytes = batch * PATCH_SIZE * PATCH_SIZE * np.dtype(np.float32).itemsize
            self.device = {name: cuda.mem_alloc(nbytes) for name in INPUT_NAMES}

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: List[str]) -> List[int]:
            if self.next + batch > len(pairs):
                return []  # no more batches
            x = pairs[self.next : self.next + batch].astype(np.float32) / np.float32(255.0)
            self.next += batch
            for channel, name in enumerate(INPUT_NAMES):
                cuda.memcpy_htod(self.device[name], np.ascontiguousarray(x[:, channel : channel + 1]))
            return [int(self.device[name]) for name in names]

        def read_calibration_cache(self) -> Optional[bytes]:
            return cache.read_bytes() if cache.is_file() else None  # None: calibrate

        def write_calibration_cache(self, data: Any) -> None:
            atomic_write_bytes(cache, bytes(memoryview(data)))

    return EntropyCalibrator()


def build_engine(request: EngineRequest) -> Dict[str, Any]:
    """Build the engine of ``request`` and write it and its manifest; return the manifest."""
    request.profile.check()
    if request.workspace_mb < 1:
        raise ExportError(f"--workspace {request.workspace_mb}: must be at least 1 MB")
    if not request.onnx.is_file():
        raise ExportError(f"--onnx {request.onnx}: file not found")
    if request.engine.is_dir():
        raise ExportError(f"--engine {request.engine}: is a folder, expected a file name")
    ok, status = tensorrt_status()
    if not ok:
        raise ExportError(f"cannot build a TensorRT engine here: {status}; "
                          "run `rrl-edge build` on the machine whose GPU will run the engine")
    import tensorrt as trt

    version = _version(trt.__version__)
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
    if plan.precision == "fp32":
        # TensorRT enables TF32 by default on Ampere and newer (10-bit mantissa in convolutions): an "FP32"
        # engine must match the FP32 ONNX to 1e-3, so keep true FP32 math there.
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan.fp16_flag and not plan.strongly_typed:
        if not builder.platform_has_fast_fp16:
            log.warning("%s has no fast FP16; TensorRT may keep FP32 kernels", gpu.name)
        config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8 and not plan.strongly_typed:
        config.set_flag(trt.BuilderFlag.INT8)
    calibration_sha256: Optional[str] = None
    calibrator = None
    if plan.int8 == "implicit":
        pairs, calibration_sha256 = _calibration_pairs(request.onnx.parent)
        # TensorRT's scales hold for one graph and one sample set: both are in the name, so no stale reuse
        tag = f"{sha256_file(plan.parse)[:12]}-{calibration_sha256[:12]}"
        cache = request.engine.with_name(f"{request.engine.stem}.trt-calib-{tag}.cache")
        calibrator = _entropy_calibrator(pairs, cache)  # kept alive until the build is done
        config.int8_calibrator = calibrator
        config.set_calibration_profile(_profile(builder, CALIBRATION_BATCH, CALIBRATION_BATCH, CALIBRATION_BATCH))
    timing_cache = request.timing_cache or default_timing_cache(trt.__version__, gpu)
    reused = _attach_timing_cache(config, timing_cache)

    started = time.time()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {plan.parse}; its log above says why")
    engine_bytes = bytes(memoryview(serialized))
    seconds = time.time() - started
    atomic_write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    del calibrator

    engine = trt.Runtime(logger).deserialize_cuda_engine(engine_bytes)
    if engine is None:
        raise ExportError("TensorRT built an engine it cannot load back")
    io_names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    if sorted(io_names) != sorted((*INPUT_NAMES, OUTPUT_NAME)):
        raise ExportError(f"the engine's tensors are {io_names}, expected {[*INPUT_NAMES, OUTPUT_NAME]}")

    manifest = _manifest(request, plan, trt.__version__, gpu, calibration_sha256, seconds, timing_cache, reused,
                         engine_bytes)
    atomic_write_bytes(request.engine, engine_bytes)
    write_json(manifest, manifest_path(request.engine))
    return manifest


def _manifest(
    request: EngineRequest,
    plan: _Plan,
    trt_version: str,
    gpu: GpuInfo,
    calibration_sha256: Optional[str],
    seconds: float,
    timing_cache: Path,
    timing_cache_reused: bool,
    engine_bytes: bytes,
) -> Dict[str, Any]:
    """What the engine is and where it came from, with the FPR95 the export measured for its ONNX."""
    onnx_dir = request.onnx.parent
    calib = _read_json(onnx_dir / CALIB_MANIFEST) or {}
    report = _read_json(onnx_dir / REPORT) or {}
    fpr95 = report.get("fpr95", {})
    measured = fpr95.get("tensorrt-qdq" if plan.int8 else "onnx-fp32")
    return {
        "format": MANIFEST_FORMAT,
        "engine": request.engine.name,
        # the runner checks these before TensorRT sees the file: a truncated or replaced engine is refused
        "engine_bytes": len(engine_bytes),
        "engine_sha256": hashlib.sha256(engine_bytes).hexdigest(),
        "tensorrt_version": trt_version,
        "gpu": {"name": gpu.name, "compute_capability": gpu.compute_capability},
        "precision": plan.precision,
        "int8_calibration": {"explicit": "Q/DQ scales of the ONNX (ONNX Runtime calibration)",
                             "implicit": "TensorRT entropy calibration (IInt8EntropyCalibrator2)", "": None}[plan.int8],
        "strongly_typed": plan.strongly_typed,
        "inputs": {name: [-1, 1, PATCH_SIZE, PATCH_SIZE] for name in INPUT_NAMES},
        "output": OUTPUT_NAME,
        "batch_profile": asdict(request.profile),
        "workspace_mb": request.workspace_mb,
        "onnx": {"file": request.onnx.name, "sha256": sha256_file(request.onnx)},
        "parsed_onnx": {"file": plan.parse.name, "sha256": sha256_file(plan.parse)},
        "calibration_sha256": calibration_sha256 or (calib.get("sha256") if plan.int8 else None),
        "fpr95_at_export": measured,
        "fpr95_note": "measured by `rrl-edge export` on the ONNX above with ONNX Runtime (CPU), before the engine existed",
        "timing_cache": {"file": str(timing_cache), "reused": timing_cache_reused},
        "build_seconds": round(seconds, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
