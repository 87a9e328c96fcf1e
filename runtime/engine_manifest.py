"""The manifest beside a TensorRT engine (``rrl.plan.json``), and the checks a runner makes before trusting it.

A serialized engine only runs on the GPU architecture and the TensorRT version that built it; given
anything else TensorRT fails with a log line deep in its own output, or (a truncated file) worse. The
manifest that ``rrl-edge build`` writes says what the engine was built for, so the runner can refuse a
mismatch up front with a message that names the file and says how to fix it. The size and sha256 of the
engine are checked before its bytes reach TensorRT, so a truncated or replaced engine is caught even
where TensorRT is not installed.

Standard library and numpy only, Python 3.8 syntax: this runs on a Jetson (JetPack 5 ships Python 3.8).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from rrl_edge.errors import InputError
from rrl_edge.contracts import INPUT_NAMES, OUTPUT_NAME, PATCH_SIZE

MANIFEST_FORMAT = "rrl-edge-engine"  # rrl_edge.export.tensorrt_build.MANIFEST_FORMAT
INPUT_SHAPE = [-1, 1, PATCH_SIZE, PATCH_SIZE]  # dynamic batch, one channel, 64 x 64
EXPECTED_INPUTS: Dict[str, List[int]] = {name: list(INPUT_SHAPE) for name in INPUT_NAMES}


class Environment(NamedTuple):
    """What the engine will run on: the installed TensorRT and the chosen GPU."""

    tensorrt_version: str  # tensorrt.__version__, e.g. "8.5.2.2" (JetPack 5.1) or "10.3.0"
    compute_capability: str  # "8.7" on a Jetson Orin, "8.6" on an RTX 30xx
    gpu_name: str


def manifest_path(engine: Path) -> Path:
    """``rrl.plan`` -> ``rrl.plan.json`` (as rrl_edge.export.tensorrt_build writes it)."""
    return engine.with_name(engine.name + ".json")


def rebuild_hint(engine: Path, manifest: Optional[Dict[str, Any]] = None) -> str:
    """How to make a good engine here: the build command, with the ONNX and flags the manifest records."""
    onnx, flags = "rrl.onnx (rrl.int8.onnx for INT8)", ""
    if manifest:
        source = manifest.get("onnx")
        if isinstance(source, dict) and source.get("file"):
            onnx = str(source["file"])
        batch = manifest.get("batch_profile")
        if isinstance(batch, dict) and {"min", "opt", "max"} <= set(batch):
            flags += f" --min-batch {batch['min']} --opt-batch {batch['opt']} --max-batch {batch['max']}"
        if "fp16" in str(manifest.get("precision", "")):
            flags += " --fp16"
    return f"rebuild it on this machine with `rrl-edge build --onnx <export folder>/{onnx} --engine {engine}{flags}`"


def read_manifest(engine: Path) -> Dict[str, Any]:
    """The manifest of ``engine``; InputError when it is missing, unreadable or not an rrl-edge manifest."""
    path = manifest_path(engine)
    if not path.is_file():
        raise InputError(
            f"{engine}: no engine manifest {path.name} beside it, so the runner cannot tell which GPU and TensorRT "
            f"version built it; {rebuild_hint(engine)}, or skip the check (check_manifest=False) and rely on "
            "TensorRT's own checks"
        )
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON engine manifest ({exc}); {rebuild_hint(engine)}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not an rrl-edge engine manifest (no \"format\": \"{MANIFEST_FORMAT}\"); "
                         f"{rebuild_hint(engine)}")
    return manifest


def check_engine_bytes(engine: Path, data: bytes, manifest: Dict[str, Any]) -> None:
    """The engine's size and sha256 are the ones recorded at build time (a truncated or replaced file is not).

    Checked on the bytes already read, which are the very bytes handed to TensorRT afterwards.
    """
    size, digest = manifest.get("engine_bytes"), manifest.get("engine_sha256")
    if size is None or digest is None:
        raise InputError(f"{manifest_path(engine)}: the manifest has no engine_bytes / engine_sha256 (written by an "
                         f"older rrl-edge), so the engine cannot be verified; {rebuild_hint(engine, manifest)}")
    if len(data) != size:
        what = "truncated" if len(data) < size else "longer than built"
        raise InputError(f"{engine}: {len(data)} bytes, but the manifest says the built engine had {size} "
                         f"(the file is {what}: an interrupted copy?); copy it again or {rebuild_hint(engine, manifest)}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise InputError(f"{engine}: sha256 {actual[:16]}... differs from the manifest's {str(digest)[:16]}... "
                         f"(the engine was replaced or corrupted after it was built); {rebuild_hint(engine, manifest)}")


def check_interface(engine: Path, manifest: Dict[str, Any]) -> None:
    """The engine takes the runner's inputs ("vis", "other": (-1, 1, 64, 64)) and gives "score"."""
    inputs = manifest.get("inputs")
    if inputs != EXPECTED_INPUTS:
        raise InputError(f"{engine}: the engine's inputs are {inputs}, the runner feeds {EXPECTED_INPUTS} "
                         f"(not an rrl-edge RRL-Net engine?); {rebuild_hint(engine, manifest)}")
    if manifest.get("output") != OUTPUT_NAME:
        raise InputError(f"{engine}: the engine's output is {manifest.get('output')!r}, the runner reads "
                         f"{OUTPUT_NAME!r}; {rebuild_hint(engine, manifest)}")


def version_triple(version: str) -> Tuple[int, ...]:
    """"8.5.2.2" -> (8, 5, 2): the build number is left out."""
    return tuple(int(x) for x in re.findall(r"\d+", str(version))[:3])


def check_environment(engine: Path, manifest: Dict[str, Any], env: Environment) -> List[str]:
    """Refuse an engine built for another GPU architecture or TensorRT version; return warnings (GPU model).

    TensorRT version rule: major.minor.patch must be equal. TensorRT's docs: "By default, TensorRT engines
    are compatible only with the version of TensorRT used to build them" (Developer Guide, Version
    Compatibility; the support matrix: "serialized engines are not portable across platforms or TensorRT
    versions"); only engines built with the VERSION_COMPATIBLE flag (8.6+) may run on a later version, and
    `rrl-edge build` does not set it. The build number (the fourth field) is not compared.

    GPU rule: the compute capability must be equal (the kernels are compiled for one architecture unless the
    engine is built hardware-compatible, which `rrl-edge build` does not do). Another GPU model of the same
    architecture runs, but TensorRT's tactic choices were timed on the builder's GPU: a warning only.
    """
    built = str(manifest.get("tensorrt_version", "?"))
    if version_triple(built) != version_triple(env.tensorrt_version):
        raise InputError(f"{engine}: built with TensorRT {built}, this machine has TensorRT {env.tensorrt_version}; "
                         f"engines only run on the TensorRT version (major.minor.patch) that built them: "
                         f"{rebuild_hint(engine, manifest)}")
    gpu = manifest.get("gpu") or {}
    built_cc = str(gpu.get("compute_capability", "?"))
    if built_cc != env.compute_capability:
        raise InputError(f"{engine}: built for a GPU of compute capability {built_cc} ({gpu.get('name', '?')}), this "
                         f"GPU is {env.gpu_name} (compute capability {env.compute_capability}); engines only run on "
                         f"the GPU architecture that built them: {rebuild_hint(engine, manifest)}")
    warnings = []
    if gpu.get("name") and gpu.get("name") != env.gpu_name:
        warnings.append(f"{engine}: built on {gpu.get('name')}, running on {env.gpu_name} (same compute capability "
                        f"{built_cc}): it runs, but rebuilding here may pick faster kernels")
    return warnings


def profile_max_batch(manifest: Dict[str, Any]) -> Optional[int]:
    """The largest batch of the engine's optimization profile, as the manifest records it."""
    profile = manifest.get("batch_profile") or {}
    high = profile.get("max")
    return int(high) if isinstance(high, int) and high > 0 else None


def check_manifest(engine: Path, data: bytes, env: Optional[Environment] = None) -> Dict[str, Any]:
    """Every check in the order a runner makes them: manifest, bytes, interface, then (given) the environment."""
    manifest = read_manifest(engine)
    check_engine_bytes(engine, data, manifest)
    check_interface(engine, manifest)
    if env is not None:
        check_environment(engine, manifest, env)
    return manifest
