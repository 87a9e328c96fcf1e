"""Images a person judges a registration by: the other image warped onto the VIS grid, and a checkerboard of
the two (edges that run on across tile borders mean the registration holds)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from rrl_edge.atomic import atomic_write


def checkerboard(vis: np.ndarray, warped: np.ndarray, tiles: int = 8) -> np.ndarray:
    """VIS in grey tiles, the warped other image in green-tinted tiles (outside its coverage: VIS)."""
    h, w = vis.shape
    t = max(16, min(h, w) // tiles)
    yy, xx = np.mgrid[0:h, 0:w]
    board = ((yy // t + xx // t) % 2).astype(bool)
    g = cv2.normalize(warped, None, 0, 255, cv2.NORM_MINMAX)
    out = np.repeat(vis[:, :, None], 3, axis=2).copy()
    other_rgb = np.stack([g // 2, g, g // 2], axis=2).astype(np.uint8)  # BGR, greenish: tells the spectra apart
    out[board] = other_rgb[board]
    return out


def write_png(img: np.ndarray, path: Path) -> None:
    """PNG through the atomic writer (never a half-written file)."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write(path, lambda tmp: tmp.write_bytes(buf.tobytes()))
