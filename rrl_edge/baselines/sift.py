"""SIFT baseline: the distance between the SIFT descriptors of the two patches' centres.

Each patch gets one descriptor at its centre with a fixed scale and orientation 0 (the pairs are
already registered, so rotation invariance would only add noise). Score = -L2 distance, so that a
higher score means "more alike", like the network's.
"""

from __future__ import annotations

import cv2
import numpy as np

from rrl_edge.contracts import check_pairs, to_uint8

# Keypoint diameter in pixels: SIFT's 4x4 cells then span about 3/4 of the 64 px patch.
SIFT_KEYPOINT_SIZE = 32.0


def sift_descriptors(patches: np.ndarray) -> np.ndarray:
    """(N, 64, 64) uint8 -> (N, 128) float32 descriptors at the patch centres."""
    sift = cv2.SIFT_create()
    h, w = patches.shape[1:]
    kp = [cv2.KeyPoint(w / 2 - 0.5, h / 2 - 0.5, SIFT_KEYPOINT_SIZE, 0)]
    out = np.empty((len(patches), 128), dtype=np.float32)
    for i, patch in enumerate(patches):
        _, desc = sift.compute(np.ascontiguousarray(patch), kp)
        out[i] = desc[0] if desc is not None else 0.0
    return out


def sift_scores(pairs: np.ndarray) -> np.ndarray:
    """Negative descriptor distance of each (VIS, other) pair; uint8 (N, 2, 64, 64) in."""
    check_pairs(pairs, "sift baseline")
    pairs = to_uint8(pairs)
    d_vis = sift_descriptors(pairs[:, 0])
    d_other = sift_descriptors(pairs[:, 1])
    return -np.linalg.norm(d_vis - d_other, axis=1)
