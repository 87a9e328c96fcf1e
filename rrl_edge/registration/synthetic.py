"""Seeded random affines for registration tests on aligned pairs (RoadScene): the other image is warped so
that the VIS point p lands at G(p); G is then the ground truth in the dataset's convention (VIS -> other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import cv2
import numpy as np

from rrl_edge.registration import geometry as geo


@dataclass(frozen=True)
class AffineRange:
    max_rotation: float = 15.0  # degrees
    min_scale: float = 0.9
    max_scale: float = 1.1
    max_shift: float = 0.2  # fraction of the image width / height


def random_affine(rng: np.random.Generator, width: int, height: int, r: AffineRange = AffineRange()) -> np.ndarray:
    """Rotation and scale about the image centre, then a shift, each uniform in its range."""
    angle = rng.uniform(-r.max_rotation, r.max_rotation)
    scale = rng.uniform(r.min_scale, r.max_scale)
    dx, dy = rng.uniform(-r.max_shift, r.max_shift) * width, rng.uniform(-r.max_shift, r.max_shift) * height
    c = ((width - 1) / 2.0, (height - 1) / 2.0)
    return geo.similarity(angle, scale, c, (c[0] + dx, c[1] + dy))


def warp_other(other: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The other image moved by ``g`` on a grid of its own size (black where nothing maps)."""
    return cv2.warpAffine(other, np.asarray(g, np.float64), (other.shape[1], other.shape[0]), flags=cv2.INTER_LINEAR)


def synthetic_pair(vis: np.ndarray, other: np.ndarray, seed: int, r: AffineRange = AffineRange()) -> Tuple[np.ndarray, np.ndarray]:
    """(warped other image, ground-truth affine VIS -> warped other) for an aligned pair."""
    g = random_affine(np.random.default_rng(seed), vis.shape[1], vis.shape[0], r)
    return warp_other(other, g), g
