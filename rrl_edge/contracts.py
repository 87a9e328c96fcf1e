"""The shared contract of every rrl-edge artifact: what goes in, what comes out, how it is scaled and named.

Defined once, here, at the bottom of the layer rule (standard library and numpy only): the model, the data
builder, the exporter, the calibrators and the device runners all read these names, so an ONNX model, a TensorRT
engine and a checkpoint agree on their interface by construction. A Jetson with numpy and TensorRT imports it.
"""

from __future__ import annotations

import hashlib
import os
from typing import Tuple

import numpy as np

from rrl_edge.errors import InputError

PATCH_SIZE = 64  # pixels per side of a patch; the published patch format is fixed at 64 x 64
CHANNELS = 1  # grayscale
INPUT_NAMES: Tuple[str, str] = ("vis", "other")  # visible, and the other spectrum (NIR or thermal)
OUTPUT_NAME = "score"  # (batch, 1) match probability in [0, 1]
BATCH_DIM = "batch"  # the name of the dynamic batch axis of every exported input and output
INPUT_SHAPE: Tuple[int, int, int, int] = (-1, CHANNELS, PATCH_SIZE, PATCH_SIZE)  # -1: the dynamic batch
PAIR_SHAPE: Tuple[int, int, int] = (2, PATCH_SIZE, PATCH_SIZE)  # one stored pair: [0] VIS, [1] other spectrum
OPSET = 17  # the newest ONNX opset TensorRT 8.5 (JetPack 5) parses; TensorRT 8.6 and 10.x parse it too

PIXEL_SCALE = np.float32(255.0)  # uint8 pixels -> float in [0, 1]: the network's input range

POLARITY_AS_IS, POLARITY_BOTH = "as-is", "both"
# How a network reads the other spectrum's polarity (its config's `polarity`, `--polarity` on the command line).
# "as-is": one pass, the image as given. "both": the mean of the scores of the other spectrum as given and inverted
# (1 - x in the [0, 1] input range), one pass of twice the batch, inside the exported graph: thermal cameras show
# many surfaces with the opposite contrast of the visible image, and the inverted view scores those.
POLARITIES: Tuple[str, ...] = (POLARITY_AS_IS, POLARITY_BOTH)

# File names that `rrl-edge export` writes and every later step looks for.
FP32_ONNX = "rrl.onnx"  # simplified FP32 graph: TensorRT FP32/FP16 builds, the implicit-INT8 path, ORT CPU
INT8_ONNX = "rrl.int8.onnx"  # Q/DQ graph for TensorRT: int8 symmetric, zero points 0, per-channel weights
INT8_CPU_ONNX = "rrl.int8-cpu.onnx"  # ONNX Runtime CPU flavour: uint8 activations, reduce_range; not for TensorRT
CALIB_RANGES = "rrl.int8.calib.json"  # ONNX Runtime calibration ranges of rrl.int8.onnx
CALIB_CPU_RANGES = "rrl.int8-cpu.calib.json"  # ... and of rrl.int8-cpu.onnx
CALIB_SAMPLES = "rrl.calib.npy"  # the calibration pairs themselves (uint8): the record of what calibrated
CALIB_MANIFEST = "rrl.calib.json"  # where the calibration pairs came from, their counts and sha256
REPORT = "export_report.json"  # the proof at export: parity numbers, hashes, versions
DEFAULT_ENGINE = "rrl.plan"
# What the device check (`rrl-edge device-check`) reads: the proof's test pairs and PyTorch's scores of them.
TEST_PAIRS = "rrl.test-pairs.npy"  # uint8 (N, 2, 64, 64), categories one after another
TEST_LABELS = "rrl.test-labels.npy"  # uint8 (N,) 0/1
REFERENCE_SCORES = "rrl.reference-scores.npy"  # float32 (N,): PyTorch's scores of TEST_PAIRS
REFERENCE = "rrl.reference.json"  # categories (name, start, stop), hashes, budget, the INT8 convolutions


def sha256_file(path: "os.PathLike[str] | str") -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (engines and models are hashed, never held whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_pairs(pairs: np.ndarray, source: str = "input") -> None:
    """(N, 2, 64, 64) uint8 in [0, 255], or float in [0, 1] (checked) with no NaN; N > 0. Errors name ``source``."""
    if not isinstance(pairs, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of patch pairs, got {type(pairs).__name__}")
    if pairs.ndim != 4 or pairs.shape[1:] != PAIR_SHAPE:
        raise InputError(f"{source}: patch pairs must have shape (N, 2, {PATCH_SIZE}, {PATCH_SIZE}), got {pairs.shape}")
    if pairs.shape[0] == 0:
        raise InputError(f"{source}: no patch pairs (N = 0)")
    if pairs.dtype == np.uint8:
        return
    if not np.issubdtype(pairs.dtype, np.floating):
        raise InputError(f"{source}: patch pairs must be uint8 or float, got {pairs.dtype}")
    if not np.isfinite(pairs).all():
        bad = int((~np.isfinite(pairs)).any(axis=(1, 2, 3)).sum())
        raise InputError(f"{source}: {bad} patch pair(s) contain NaN or infinity")
    lo, hi = float(pairs.min()), float(pairs.max())
    if lo < 0.0 or hi > 1.0:  # 0..255 floats would be scored as if scaled: all white
        raise InputError(f"{source}: float patch pairs must be scaled to 0..1, these span {lo:g}..{hi:g}; "
                         "store uint8 pixels (0..255) instead")


def to_unit_float(pairs: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 is divided by 255, floats are taken as already scaled (checked elsewhere)."""
    if pairs.dtype == np.uint8:
        return pairs.astype(np.float32) / PIXEL_SCALE
    return pairs.astype(np.float32, copy=False)


def to_uint8(pairs: np.ndarray) -> np.ndarray:
    """uint8 pixels as a camera gives them: float input in [0, 1] is scaled back and rounded."""
    if pairs.dtype == np.uint8:
        return pairs
    return np.clip(np.rint(pairs * PIXEL_SCALE), 0, 255).astype(np.uint8)


def split_pair_batch(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """C-contiguous float32 (B, 1, 64, 64) VIS and other-spectrum inputs of a (B, 2, 64, 64) pair batch."""
    x = to_unit_float(batch)
    return np.ascontiguousarray(x[:, :1]), np.ascontiguousarray(x[:, 1:])
