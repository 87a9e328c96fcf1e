"""2x3 affine helpers. Convention throughout: an affine maps VIS pixel (x, y, 1) to the other image's pixel."""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import cv2
import numpy as np


def to3(a: np.ndarray) -> np.ndarray:
    return np.vstack([np.asarray(a, np.float64).reshape(2, 3), [0.0, 0.0, 1.0]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x -> a(b(x))."""
    return (to3(a) @ to3(b))[:2]


def similarity(angle_deg: float, scale: float, center_from: Tuple[float, float], center_to: Tuple[float, float]) -> np.ndarray:
    """Rotate by ``angle_deg`` and scale about ``center_from``, landing it on ``center_to``."""
    t = math.radians(angle_deg)
    r = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    c0, c1 = np.asarray(center_from, np.float64), np.asarray(center_to, np.float64)
    return np.hstack([r, (c1 - r @ c0)[:, None]])


def motion_of(a: np.ndarray) -> str:
    """"similarity" when the 2x2 part is [[s, -t], [t, s]] (what a similarity fit returns, exactly), else "affine"."""
    m = np.asarray(a, np.float64)
    return "similarity" if np.allclose([m[0, 0], m[0, 1]], [m[1, 1], -m[1, 0]], rtol=0.0, atol=1e-9) else "affine"


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])


def apply(a: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    return pts @ np.asarray(a, np.float64)[:, :2].T + np.asarray(a, np.float64)[:, 2]


def corners(width: int, height: int) -> np.ndarray:
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)


def corner_error(est: np.ndarray, gt: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px, in the other image) between the 4 VIS corners mapped by ``est`` and by ``gt``."""
    c = corners(width, height)
    return float(np.linalg.norm(apply(est, c) - apply(gt, c), axis=1).mean())


def scale_affine(a: np.ndarray, f_from: float, f_to: float) -> np.ndarray:
    """The same map expressed on images resized by ``f_from`` (source) and ``f_to`` (target)."""
    return compose(np.diag([f_to, f_to, 1.0])[:2], compose(a, np.diag([1 / f_from, 1 / f_from, 1.0])[:2]))


def warp_to_vis(other: np.ndarray, a: np.ndarray, vis_shape: Sequence[int]) -> np.ndarray:
    """``other`` resampled on the VIS grid: output pixel p takes the other image at a(p) (bilinear; 0 outside)."""
    h, w = vis_shape[:2]
    return cv2.warpAffine(other, np.asarray(a, np.float64), (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
