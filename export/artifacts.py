"""Names of the files an export writes, and the atomic writes and hashes they share.

Every file goes to a temporary name in its target folder and is renamed into place, so a crash or a
failed check never leaves half a model that a later build would trust.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from rrl_edge.atomic import PathLike, atomic_write, atomic_write_bytes, write_json  # noqa: F401  (shared writers)

FP32_ONNX = "rrl.onnx"  # simplified FP32 graph: TensorRT FP32/FP16 builds, the implicit-INT8 path, ORT CPU
INT8_ONNX = "rrl.int8.onnx"  # Q/DQ graph for TensorRT: int8 symmetric, zero points 0, per-channel weights
INT8_CPU_ONNX = "rrl.int8-cpu.onnx"  # ONNX Runtime CPU flavour: uint8 activations, reduce_range; not for TensorRT
CALIB_RANGES = "rrl.int8.calib.json"  # ONNX Runtime calibration ranges of rrl.int8.onnx
CALIB_CPU_RANGES = "rrl.int8-cpu.calib.json"  # ... and of rrl.int8-cpu.onnx
CALIB_SAMPLES = "rrl.calib.npy"  # the calibration pairs themselves (uint8), for TensorRT 8.5's implicit INT8
CALIB_MANIFEST = "rrl.calib.json"  # where the calibration pairs came from, their counts and sha256
REPORT = "export_report.json"  # the proof at export: parity numbers, hashes, versions
DEFAULT_ENGINE = "rrl.plan"


def sha256_file(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_json(path: PathLike, obj: Any) -> Path:
    return write_json(obj, path)
