"""Patch-pair arrays as every backend takes them: checked once, scaled once, split into the two inputs.

numpy only (no torch): the TensorRT and ONNX Runtime runners use it on the device.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from rrl_edge.contracts import PATCH_SIZE, split_pair_batch
from rrl_edge.errors import InputError



def check_pairs(pairs: np.ndarray, source: str = "input") -> None:
    """(N, 2, 64, 64) uint8 in [0, 255], or float in [0, 1] with no NaN; N > 0. Errors name ``source``."""
    if not isinstance(pairs, np.ndarray):
        raise InputError(f"{source}: expected a numpy array of patch pairs, got {type(pairs).__name__}")
    if pairs.ndim != 4 or pairs.shape[1:] != (2, PATCH_SIZE, PATCH_SIZE):
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


def split_inputs(batch: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """float32 (B, 1, 64, 64) VIS and other-spectrum arrays, C-contiguous; uint8 is scaled by 1/255."""
    return split_pair_batch(batch)
