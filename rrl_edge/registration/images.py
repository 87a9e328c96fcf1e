"""Reading the two images of a registration pair as grayscale, with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np

from rrl_edge.contracts import PATCH_SIZE
from rrl_edge.data.images import read_gray
from rrl_edge.errors import DataError

MIN_SIDE = 2 * PATCH_SIZE  # smaller than two patches a side leaves no room for a search window


def check_image(img: np.ndarray, path: Path) -> np.ndarray:
    """Refuse images too small to cut patches from, or flat (no structure, hence no keypoints)."""
    h, w = img.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise DataError(f"{path}: image is {w}x{h}, too small to register (need at least {MIN_SIDE} px a side)")
    if float(img.std()) < 1.0:
        raise DataError(f"{path}: image is flat (no structure to register)")
    return img


def read_pair(vis_path: Path, other_path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Both images as uint8 grayscale (a 3-channel NIR jpg is converted), checked."""
    vis = check_image(read_gray(Path(vis_path)), Path(vis_path))
    other = check_image(read_gray(Path(other_path)), Path(other_path))
    return vis, other
