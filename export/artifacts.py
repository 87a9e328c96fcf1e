"""Names of the files an export writes, and the hash that ties them together.

Every file is written through rrl_edge.atomic (temporary name in the target folder, then a rename), so a
crash or a failed check never leaves half a model that a later build would trust.
"""

from __future__ import annotations

import hashlib

from rrl_edge.atomic import PathLike

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

