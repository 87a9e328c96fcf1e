"""The classical baseline: OpenCV SIFT on both images, Lowe's ratio test, USAC/MAGSAC affine."""

from __future__ import annotations

import time
from typing import Optional, Tuple

import cv2
import numpy as np

from rrl_edge.registration.estimate import magsac_affine


def sift_register(vis: np.ndarray, other: np.ndarray, ratio: float = 0.8, threshold: float = 3.0) -> Tuple[Optional[np.ndarray], int, float]:
    """(affine VIS -> other or None, inliers, seconds)."""
    t = time.perf_counter()
    sift = cv2.SIFT_create(nfeatures=4000)
    kv, dv = sift.detectAndCompute(vis, None)
    ko, do = sift.detectAndCompute(other, None)
    if dv is None or do is None or len(kv) < 3 or len(ko) < 3:
        return None, 0, time.perf_counter() - t
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dv, do, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    src = np.array([kv[m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
    dst = np.array([ko[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
    est = magsac_affine(src, dst, threshold, min_inliers=3)
    if est is None:
        return None, 0, time.perf_counter() - t
    return est.affine, est.count, time.perf_counter() - t
