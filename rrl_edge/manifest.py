"""The engine manifest (``rrl.plan.json``): one dataclass that ``rrl-edge build`` writes and every runner reads.

A serialized TensorRT engine only runs on the GPU architecture and the TensorRT version that built it, and
a truncated or replaced file reaches TensorRT as garbage. The manifest says what the engine was built for,
so the runner refuses a mismatch up front, in one line naming the file and the fix. Everything about it
lives here, once: the path convention, the JSON layout, the type of every field (validated when read),
TensorRT version parsing, the size check made BEFORE the engine is read, the sha256 check, the GPU and
version rules, and the rebuild hint.

Bottom layer: the standard library, numpy-free even, and Python 3.8 syntax (JetPack 5 ships Python 3.8).
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from rrl_edge.atomic import write_json
from rrl_edge.contracts import INPUT_NAMES, INPUT_SHAPE, OUTPUT_NAME
from rrl_edge.errors import InputError

FORMAT = "rrl-edge-engine"
FORMAT_VERSION = 2
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")
PRECISIONS = ("fp32", "fp16", "int8", "int8+fp16")
EXPECTED_INPUTS: Dict[str, List[int]] = {name: list(INPUT_SHAPE) for name in INPUT_NAMES}

# The TensorRT versions rrl-edge builds and runs with, as a pip requirement: the one place the range is written.
# Every message (install hints, version refusals) and the `tensorrt` extra of pyproject.toml say this range.
# 8.5 is JetPack 5.1's TensorRT (the first with named-tensor I/O and execute_async_v3); 11 is the last major
# whose API the builder and runner were checked against (strong typing only: see rrl_edge.export.tensorrt_build).
SUPPORTED_TENSORRT = ">=8.5,<12"


# What to do when TensorRT or pycuda is missing. JetPack installs TensorRT's Python bindings with apt
# (python3-libnvinfer) into the system Python, and no pycuda; scripts/setup_device.sh makes the venv that sees
# them (--system-site-packages), builds pycuda against the local CUDA, and on a desktop pip-installs tensorrt.
TENSORRT_INSTALL_HINT = (
    f"rrl-edge needs TensorRT {SUPPORTED_TENSORRT} and pycuda: run `bash scripts/setup_device.sh` (on a Jetson it "
    "makes a venv with --system-site-packages that sees JetPack's TensorRT, apt python3-libnvinfer, and builds "
    f"pycuda against the local CUDA; on a desktop it pip-installs 'tensorrt{SUPPORTED_TENSORRT}' and pycuda)")


def system_tensorrt() -> Optional[str]:
    """TensorRT's Python bindings as JetPack installs them (apt python3-libnvinfer: the system Python's
    dist-packages), which a venv without --system-site-packages cannot import."""
    for pattern in ("/usr/lib/python3*/dist-packages/tensorrt", "/usr/local/lib/python3*/dist-packages/tensorrt"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def hidden_tensorrt_message(system: str, python: str) -> str:
    """What to do when the system has TensorRT (``system``) that the venv of ``python`` cannot see."""
    return (f"TensorRT is installed for the system Python ({system}) but {python} cannot import it: its venv was made "
            "without --system-site-packages; recreate it with `bash scripts/setup_device.sh`")


def supported_range() -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """SUPPORTED_TENSORRT as ((8, 5), (12, 0)): the lowest (major, minor) accepted and the first refused."""
    low, high = ((version_triple(part) + (0, 0))[:2] for part in SUPPORTED_TENSORRT.split(","))
    return low, high


def supported_text() -> str:
    """The range in words for messages: "8.5 to 11.x"."""
    (low_major, low_minor), (high_major, _) = supported_range()
    return f"{low_major}.{low_minor} to {high_major - 1}.x"


class Environment(NamedTuple):
    """What an engine will run on: the installed TensorRT and the chosen GPU."""

    tensorrt_version: str  # tensorrt.__version__, e.g. "8.5.2.2" (JetPack 5.1) or "10.3.0"
    compute_capability: str  # "8.7" on a Jetson Orin, "8.6" on an RTX 30xx
    gpu_name: str


def manifest_path(engine: Path) -> Path:
    """``rrl.plan`` -> ``rrl.plan.json``."""
    return engine.with_name(engine.name + ".json")


def version_triple(version: str) -> Tuple[int, ...]:
    """``"8.5.2.2"`` -> ``(8, 5, 2)``: the build number is left out."""
    return tuple(int(x) for x in re.findall(r"\d+", str(version))[:3])


def engine_name_for(path: Path) -> Path:
    """An engine file name for ``path`` that never is the ONNX model itself: ``rrl.onnx`` -> ``rrl.plan``."""
    return path if path.suffix in ENGINE_SUFFIXES else path.with_suffix(".plan")


@dataclass(frozen=True)
class EngineManifest:
    """What an engine is, what built it, and what it was measured to do (at export, on its ONNX)."""

    engine: str  # file name of the engine beside this manifest
    engine_bytes: int
    engine_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str  # one of PRECISIONS
    strongly_typed: bool
    batch_min: int
    batch_opt: int
    batch_max: int
    onnx_file: str
    onnx_sha256: str
    workspace_mb: int = 1024
    calibration_sha256: Optional[str] = None
    fpr95_at_export: Optional[Dict[str, Any]] = None
    timing_cache: Optional[str] = None
    timing_cache_reused: bool = False
    build_seconds: float = 0.0
    built_at: str = ""
    builder: str = "tensorrt"  # who built it (TensorRT's API directly)
    builder_flags: Optional[List[str]] = None  # trt.BuilderFlag names set (None: not recorded, older builds)
    cleared_flags: Optional[List[str]] = None  # trt.BuilderFlag names cleared ("TF32")
    inputs: Dict[str, List[int]] = field(default_factory=lambda: {k: list(v) for k, v in EXPECTED_INPUTS.items()})
    output: str = OUTPUT_NAME
    dla_core: Optional[int] = None  # the DLA core the engine was built for (None: GPU only)
    dla_layers: Optional[int] = None  # network layers TensorRT said can run on the DLA (config.can_run_on_DLA)
    gpu_fallback_layers: Optional[int] = None  # network layers it said cannot, which GPU_FALLBACK runs on the GPU
    gpu_fallback_names: Optional[List[str]] = None  # their names

    # ---- JSON ----

    def to_json(self) -> Dict[str, Any]:
        data = asdict(self)
        data.update(format=FORMAT, format_version=FORMAT_VERSION)
        return data

    @classmethod
    def from_json(cls, data: Any, source: Path) -> "EngineManifest":
        """Validate every field's type (one InputError naming ``source`` and the field), then build."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{source}: not an rrl-edge engine manifest (no \"format\": \"{FORMAT}\")")
        if data.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{source}: engine manifest format_version {data.get('format_version')!r}, this "
                             f"rrl-edge reads {FORMAT_VERSION} (rebuild the engine with this version)")
        values: Dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.name in _OPTIONAL:
                    continue
                raise InputError(f"{source}: engine manifest field {f.name!r} is missing")
            value = data[f.name]
            expected = _TYPES[f.name]
            if not _is(value, expected):
                raise InputError(f"{source}: engine manifest field {f.name!r} is {type(value).__name__} "
                                 f"{_short(value)}, expected {_describe(expected)}")
            values[f.name] = value
        manifest = cls(**values)
        manifest._check_values(source)
        return manifest

    def _check_values(self, source: Path) -> None:
        if self.engine_bytes <= 0:
            raise InputError(f"{source}: engine_bytes {self.engine_bytes} must be positive")
        if not re.fullmatch(r"[0-9a-f]{64}", self.engine_sha256):
            raise InputError(f"{source}: engine_sha256 is not a hex sha256")
        if self.precision not in PRECISIONS:
            raise InputError(f"{source}: precision {self.precision!r}, expected one of {', '.join(PRECISIONS)}")
        if not 1 <= self.batch_min <= self.batch_opt <= self.batch_max:
            raise InputError(f"{source}: batch profile {self.batch_min}/{self.batch_opt}/{self.batch_max} "
                             "is not 1 <= min <= opt <= max")
        if len(version_triple(self.tensorrt_version)) < 2:
            raise InputError(f"{source}: tensorrt_version {self.tensorrt_version!r} is not a version")
        if self.dla_core is not None and (self.dla_core < 0 or self.batch_min != self.batch_max):
            raise InputError(f"{source}: dla_core {self.dla_core} needs a core >= 0 and a fixed batch "
                             f"(batch_min {self.batch_min} == batch_max {self.batch_max})")

    # ---- the file ----

    def write(self, engine: Path) -> Path:
        """Write beside ``engine`` atomically; returns the manifest's path."""
        path = manifest_path(engine)
        write_json(self.to_json(), path)
        return path

    @classmethod
    def read(cls, engine: Path) -> "EngineManifest":
        """The manifest beside ``engine``; InputError when missing, unreadable, or a field is wrong."""
        path = manifest_path(engine)
        if not path.is_file():
            raise InputError(
                f"{engine}: no engine manifest {path.name} beside it, so the runner cannot tell which GPU and "
                f"TensorRT version built it; {rebuild_hint(engine)} (the checked way), or run it unchecked with "
                "`rrl-edge run --no-manifest` (TensorRTRunner(check_manifest=False))")
        if path.stat().st_size > 1 << 20:
            raise InputError(f"{path}: {path.stat().st_size} bytes is no engine manifest (they are about 2 kB)")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"{path}: not a readable JSON engine manifest ({exc}); {rebuild_hint(engine)}") from exc
        return cls.from_json(data, path)

    # ---- the checks, in the order a runner makes them ----

    def check_size(self, engine: Path) -> None:
        """The engine's size on disk is the built one: made with stat(), BEFORE a byte of the engine is read
        (a 6 GB file named rrl.plan is refused without reading it)."""
        try:
            size = engine.stat().st_size
        except OSError as exc:
            raise InputError(f"{engine}: cannot read the engine ({exc.strerror})") from exc
        if size != self.engine_bytes:
            what = "truncated" if size < self.engine_bytes else "longer than built"
            raise InputError(f"{engine}: {size} bytes, but its manifest says the built engine had {self.engine_bytes} "
                             f"(the file is {what}: an interrupted copy?); copy it again or {rebuild_hint(engine, self)}")

    def check_bytes(self, engine: Path, data: bytes) -> None:
        """The bytes read are the built ones (size, then sha256): the very bytes then handed to TensorRT."""
        if len(data) != self.engine_bytes:
            raise InputError(f"{engine}: read {len(data)} bytes, the manifest says {self.engine_bytes}; "
                             f"{rebuild_hint(engine, self)}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != self.engine_sha256:
            raise InputError(f"{engine}: sha256 {actual[:16]}... differs from the manifest's {self.engine_sha256[:16]}"
                             f"... (replaced or corrupted after it was built); {rebuild_hint(engine, self)}")

    def check_interface(self, engine: Path) -> None:
        """The engine takes the runner's inputs ("vis", "other": (-1, 1, 64, 64)) and gives "score"."""
        if self.inputs != EXPECTED_INPUTS:
            raise InputError(f"{engine}: the engine's inputs are {self.inputs}, the runner feeds {EXPECTED_INPUTS} "
                             f"(not an rrl-edge RRL-Net engine?); {rebuild_hint(engine, self)}")
        if self.output != OUTPUT_NAME:
            raise InputError(f"{engine}: the engine's output is {self.output!r}, the runner reads {OUTPUT_NAME!r}; "
                             f"{rebuild_hint(engine, self)}")

    def check_environment(self, engine: Path, env: Environment) -> List[str]:
        """Refuse an engine built for another GPU architecture or TensorRT version; return warnings (GPU model).

        TensorRT: "By default, TensorRT engines are compatible only with the version of TensorRT used to
        build them" (Developer Guide, Version Compatibility); `rrl-edge build` sets no VERSION_COMPATIBLE
        flag, so major.minor.patch must match (the build number is not compared). GPU: the compute
        capability must match (no hardware-compatible build); another model of one architecture runs,
        with a warning (tactics were timed on the builder's GPU).
        """
        if version_triple(self.tensorrt_version) != version_triple(env.tensorrt_version):
            raise InputError(f"{engine}: built with TensorRT {self.tensorrt_version}, this machine has TensorRT "
                             f"{env.tensorrt_version}; engines only run on the TensorRT version (major.minor.patch) "
                             f"that built them: {rebuild_hint(engine, self)}")
        if self.compute_capability != env.compute_capability:
            raise InputError(f"{engine}: built for a GPU of compute capability {self.compute_capability} "
                             f"({self.gpu_name}), this GPU is {env.gpu_name} (compute capability "
                             f"{env.compute_capability}); engines only run on the GPU architecture that built them: "
                             f"{rebuild_hint(engine, self)}")
        if self.gpu_name and self.gpu_name != env.gpu_name:
            return [f"{engine}: built on {self.gpu_name}, running on {env.gpu_name} (same compute capability "
                    f"{self.compute_capability}): it runs, but rebuilding here may pick faster kernels"]
        return []


_OPTIONAL = {"calibration_sha256", "fpr95_at_export", "timing_cache", "timing_cache_reused", "build_seconds",
             "built_at", "builder", "workspace_mb", "builder_flags", "cleared_flags", "dla_core", "dla_layers",
             "gpu_fallback_layers", "gpu_fallback_names"}
_STR, _INT, _BOOL, _FLOAT = "str", "int", "bool", "float"
_TYPES: Dict[str, Any] = {
    "engine": _STR, "engine_bytes": _INT, "engine_sha256": _STR, "tensorrt_version": _STR, "gpu_name": _STR,
    "compute_capability": _STR, "precision": _STR, "strongly_typed": _BOOL, "batch_min": _INT, "batch_opt": _INT,
    "batch_max": _INT, "onnx_file": _STR, "onnx_sha256": _STR, "workspace_mb": _INT,
    "calibration_sha256": (_STR, None), "fpr95_at_export": ("dict", None), "timing_cache": (_STR, None),
    "timing_cache_reused": _BOOL, "build_seconds": _FLOAT, "built_at": _STR, "builder": _STR,
    "inputs": "shapes", "output": _STR, "builder_flags": ("strs", None), "cleared_flags": ("strs", None),
    "dla_core": (_INT, None), "dla_layers": (_INT, None), "gpu_fallback_layers": (_INT, None),
    "gpu_fallback_names": ("strs", None),
}


def _is(value: Any, expected: Any) -> bool:
    if isinstance(expected, tuple):
        return any(_is(value, e) for e in expected)
    if expected is None:
        return value is None
    if expected == _BOOL:
        return isinstance(value, bool)
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _FLOAT:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected == _STR:
        return isinstance(value, str)
    if expected == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if expected == "dict":
        return isinstance(value, dict)
    if expected == "shapes":
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in v)
            for k, v in value.items())
    raise AssertionError(expected)


def _describe(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_describe(e) for e in expected)
    return {None: "null", "shapes": "{name: [int, ...]}", "strs": "[str, ...]"}.get(expected, expected)


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def rebuild_hint(engine: Path, manifest: Optional[EngineManifest] = None) -> str:
    """How to make a good engine here: the build command with the ONNX and flags the manifest records. The
    engine it names is never the ONNX model (``run --model rrl.onnx --backend tensorrt`` gets ``rrl.plan``)."""
    onnx, flags = "rrl.onnx (rrl.int8.onnx for INT8)", ""
    target = engine_name_for(engine)
    if engine.suffix == ".onnx":
        onnx = str(engine)
    if manifest is not None:
        onnx = f"<export folder>/{manifest.onnx_file}"
        flags = f" --min-batch {manifest.batch_min} --opt-batch {manifest.batch_opt} --max-batch {manifest.batch_max}"
        if "fp16" in manifest.precision:
            flags += " --fp16"
        if manifest.dla_core is not None:
            flags += f" --dla-core {manifest.dla_core}"
    elif engine.suffix != ".onnx":
        onnx = f"<export folder>/{onnx}"
    verb = "build an engine from it" if engine.suffix == ".onnx" else "rebuild it"
    return f"{verb} on this machine with `rrl-edge build --model {onnx} --engine {target}{flags}`"
