"""Robust affine estimation with OpenCV's USAC/MAGSAC, then a least-squares refit on the inliers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from rrl_edge.errors import RRLEdgeError


class RegistrationFailed(RRLEdgeError):
    """The images were read, but no trustworthy affine was found (the command exits 1, not 2)."""


@dataclass
class Estimate:
    affine: np.ndarray  # 2x3, VIS -> other
    inliers: np.ndarray  # bool per correspondence

    @property
    def count(self) -> int:
        return int(self.inliers.sum())


def magsac_affine(src: np.ndarray, dst: np.ndarray, threshold: float, min_inliers: int = 6) -> Optional[Estimate]:
    """MAGSAC++ affine (USAC) from VIS points ``src`` to other-image points ``dst``; None when it fails."""
    if len(src) < max(3, min_inliers):
        return None
    a, mask = cv2.estimateAffine2D(
        src.astype(np.float32).reshape(-1, 1, 2), dst.astype(np.float32).reshape(-1, 1, 2),
        method=cv2.USAC_MAGSAC, ransacReprojThreshold=float(threshold), maxIters=10000, confidence=0.9999,
    )
    if a is None or mask is None or not np.isfinite(a).all():
        return None
    inl = mask.reshape(-1).astype(bool)
    if inl.sum() < min_inliers:
        return None
    # least squares on the inliers: MAGSAC's model is fitted to a minimal sample plus local optimisation
    x = np.hstack([src[inl], np.ones((int(inl.sum()), 1))])
    sol, *_ = np.linalg.lstsq(x, dst[inl], rcond=None)
    return Estimate(sol.T.astype(np.float64), inl)


def plausible(a: np.ndarray, max_rotation: float, min_scale: float, max_scale: float, slack: float = 0.05) -> bool:
    """Within the searched range (plus slack), with little shear: an affine outside it is a wrong match."""
    m = np.asarray(a)[:, :2]
    det = float(np.linalg.det(m))
    if det <= 0:
        return False
    s = np.sqrt(det)
    u, sv, vt = np.linalg.svd(m)
    if sv[0] / sv[1] > 1.0 + 2 * slack:  # anisotropy / shear
        return False
    angle = np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))
    return (min_scale * (1 - slack) <= s <= max_scale * (1 + slack)) and abs(angle) <= max_rotation + 5.0
