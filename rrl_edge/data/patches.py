"""Keypoints on the VIS image and the patch pairs cut around them.

Positives are the VIS patch and the other-spectrum patch at the same keypoint (the images are on one
grid by then). Negatives pair the VIS patch at keypoint i with the other-spectrum patch at another
keypoint j of the same image whose centre is at least one patch width away in Chebyshev distance
(max(|dx|, |dy|) >= 64), i.e. the two windows do not overlap at all: a negative never shares pixels
with its positive. "far" negatives take any such j, "near" ones only j at most 128 px away (see
``protocol``). One negative per positive, so every image gives an exact 50/50 split.

Keypoints are either the strongest (non-max-suppressed) responses first, or a seeded uniform draw among
all of them ("uniform", the default test cut), which reaches the low-contrast places too.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from rrl_edge.data.protocol import FAR_MIN_PX, KEYPOINT_SAMPLINGS, NEAR_MAX_PX, NEAR_MIN_PX, NEGATIVE_RULES

DETECTORS = ("sift", "fast")


def _raw_keypoints(gray: np.ndarray, detector: str) -> Tuple[np.ndarray, np.ndarray]:
    """(K, 2) integer centres (x, y) and their responses."""
    if detector == "sift":
        kps = cv2.SIFT_create().detect(gray, None)  # type: ignore[attr-defined]  # not in cv2's stubs
    elif detector == "fast":
        kps = cv2.FastFeatureDetector_create().detect(gray, None)  # type: ignore[attr-defined]
    else:
        raise ValueError(f"unknown keypoint detector {detector!r}; expected one of {DETECTORS}")
    if not kps:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float64)
    pts = np.floor(np.array([k.pt for k in kps], np.float64) + 0.5).astype(np.int64)
    resp = np.array([k.response for k in kps], np.float64)
    return pts, resp


def windows_inside(centres: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """Which size x size windows (top-left = centre - size // 2) lie wholly inside the image and ``valid``."""
    h, w = valid.shape
    half = size // 2
    x0, y0 = centres[:, 0] - half, centres[:, 1] - half
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + size <= w) & (y0 + size <= h)
    ii = cv2.integral((~valid.astype(bool)).astype(np.uint8), sdepth=cv2.CV_32S)  # (h+1, w+1) invalid counts
    ok = np.zeros(len(centres), bool)
    x0i, y0i = x0[inside], y0[inside]
    bad = ii[y0i + size, x0i + size] - ii[y0i, x0i + size] - ii[y0i + size, x0i] + ii[y0i, x0i]
    ok[inside] = bad == 0
    return ok


def detect_keypoints(
    gray: np.ndarray,
    valid: np.ndarray,
    limit: int,
    patch_size: int = 64,
    min_distance: int = 8,
    detector: str = "sift",
    sampling: str = "strongest",
    rng: Optional[np.random.Generator] = None,
) -> np.ndarray:
    """Up to ``limit`` keypoint centres (x, y) whose window is wholly valid, after greedy non-max
    suppression: a keypoint closer than ``min_distance`` (Euclidean) to a stronger kept one is skipped,
    so patches do not pile up on one corner. Ties in response are broken by (y, x), so the result does
    not depend on the detector's output order.

    ``sampling="strongest"``: the ``limit`` strongest, strongest first. ``"uniform"``: ``limit`` drawn
    with ``rng`` uniformly among all suppressed-and-valid keypoints (all of them if fewer), kept in
    strength order."""
    if sampling not in KEYPOINT_SAMPLINGS:
        raise ValueError(f"unknown keypoint sampling {sampling!r}; expected one of {tuple(KEYPOINT_SAMPLINGS)}")
    if sampling == "uniform" and rng is None:
        raise ValueError("uniform keypoint sampling needs a seeded rng")
    ranked = nms_keypoints(gray, valid, limit if sampling == "strongest" else None, patch_size, min_distance, detector)
    return select_keypoints(ranked, limit, sampling, rng)


def select_keypoints(
    ranked: np.ndarray, limit: int, sampling: str, rng: Optional[np.random.Generator] = None
) -> np.ndarray:
    """``limit`` of the strength-ordered keypoints ``ranked``: the first ones, or a seeded uniform draw."""
    if sampling == "uniform" and len(ranked) > limit:
        assert rng is not None
        return ranked[np.sort(rng.choice(len(ranked), size=limit, replace=False))]
    return ranked[:limit]


def nms_keypoints(
    gray: np.ndarray,
    valid: np.ndarray,
    limit: Optional[int],
    patch_size: int = 64,
    min_distance: int = 8,
    detector: str = "sift",
) -> np.ndarray:
    """Every non-max-suppressed keypoint with a valid window (or the first ``limit``), strongest first."""
    pts, resp = _raw_keypoints(gray, detector)
    ok = windows_inside(pts, valid, patch_size) if len(pts) else np.zeros(0, bool)
    pts, resp = pts[ok], resp[ok]
    order = np.lexsort((pts[:, 0], pts[:, 1], -resp))
    pts = pts[order]
    h, w = gray.shape
    blocked = np.zeros((h, w), bool)
    r = max(int(min_distance), 0)
    disk = None
    if r > 0:
        yy, xx = np.mgrid[-r + 1 : r, -r + 1 : r]
        disk = (xx * xx + yy * yy) < r * r
    kept: List[Tuple[int, int]] = []
    for x, y in pts:
        if limit is not None and len(kept) >= limit:
            break
        if blocked[y, x]:
            continue
        kept.append((x, y))
        if disk is not None:
            ys, ye, xs, xe = max(0, y - r + 1), min(h, y + r), max(0, x - r + 1), min(w, x + r)
            blocked[ys:ye, xs:xe] |= disk[ys - (y - r + 1) : ye - (y - r + 1), xs - (x - r + 1) : xe - (x - r + 1)]
    return np.array(kept, np.int64).reshape(-1, 2)


def cut_patches(image: np.ndarray, centres: np.ndarray, size: int = 64) -> np.ndarray:
    """(K, size, size) uint8 copies of the windows around ``centres`` (all must be inside the image)."""
    half = size // 2
    views = sliding_window_view(image, (size, size))
    return np.ascontiguousarray(views[centres[:, 1] - half, centres[:, 0] - half])


def negative_partners(
    centres: np.ndarray,
    rng: np.random.Generator,
    min_separation: int = 64,
    max_separation: Optional[int] = None,
    candidates: Optional[np.ndarray] = None,
) -> np.ndarray:
    """For each keypoint, the index of a random keypoint of ``candidates`` (default: ``centres`` themselves)
    at Chebyshev distance in [``min_separation``, ``max_separation``] (no upper bound if None); -1 if none."""
    k = len(centres)
    if candidates is None:
        candidates = centres
    if k == 0 or len(candidates) == 0:
        return np.full(k, -1, np.int64)
    d = np.abs(centres[:, None, :] - candidates[None, :, :]).max(axis=2)
    eligible = d >= min_separation
    if max_separation is not None:
        eligible &= d <= max_separation
    score = np.where(eligible, rng.random((k, len(candidates))), -1.0)
    partner = score.argmax(axis=1)
    partner[~eligible.any(axis=1)] = -1
    return partner


def choose_partners(
    centres: np.ndarray, rng: np.random.Generator, negatives: str = "far", pool: Optional[np.ndarray] = None
) -> np.ndarray:
    """Partner centres (K, 2) of each keypoint under a ``protocol.NEGATIVE_RULES`` rule; (-1, -1) where none.

    Far partners are other chosen keypoints, drawn exactly as the original cut did (same rng use), so
    strongest + far reproduces it. Near partners come from ``pool`` (every valid keypoint of the image;
    default the chosen ones): the 64-128 px band around a keypoint is small, and a sparse draw of
    keypoints often has nothing in it."""
    if negatives not in NEGATIVE_RULES:
        raise ValueError(f"unknown negatives {negatives!r}; expected one of {tuple(NEGATIVE_RULES)}")
    pool = centres if pool is None else pool
    none = np.full((1, 2), -1, np.int64)

    def at(points: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return np.where((idx >= 0)[:, None], np.concatenate([points, none])[idx], -1) if len(idx) else none[:0]

    frac = NEGATIVE_RULES[negatives].near_fraction
    if frac == 0.0:
        return at(centres, negative_partners(centres, rng, FAR_MIN_PX))
    near = at(pool, negative_partners(centres, rng, NEAR_MIN_PX, NEAR_MAX_PX, candidates=pool))
    if frac == 1.0:
        return near
    far = at(centres, negative_partners(centres, rng, FAR_MIN_PX))
    want_near = rng.random(len(centres)) < frac
    use_near = (want_near & (near[:, 0] >= 0)) | (far[:, 0] < 0)
    return np.where(use_near[:, None], near, far)


def make_pairs(
    vis: np.ndarray,
    other: np.ndarray,
    valid: np.ndarray,
    count: int,
    rng: np.random.Generator,
    patch_size: int = 64,
    min_distance: int = 8,
    detector: str = "sift",
    sampling: str = "strongest",
    negatives: str = "far",
) -> Tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` positives and as many negatives of one aligned image pair, interleaved
    (positive i at 2i, its negative at 2i + 1); returns (patches (2K, 2, s, s) uint8, labels (2K,) uint8).
    ``rng`` draws the keypoints (uniform sampling) and then the negative partners."""
    if sampling not in KEYPOINT_SAMPLINGS:
        raise ValueError(f"unknown keypoint sampling {sampling!r}; expected one of {tuple(KEYPOINT_SAMPLINGS)}")
    if negatives not in NEGATIVE_RULES:
        raise ValueError(f"unknown negatives {negatives!r}; expected one of {tuple(NEGATIVE_RULES)}")
    whole = sampling == "uniform" or NEGATIVE_RULES[negatives].near_fraction > 0  # need every keypoint
    pool = nms_keypoints(vis, valid, None if whole else count, patch_size, min_distance, detector)
    centres = select_keypoints(pool, count, sampling, rng)
    partner = choose_partners(centres, rng, negatives, pool)
    keep = partner[:, 0] >= 0  # a keypoint without a partner in its band gives neither, to stay 50/50
    centres, partner_centres = centres[keep], partner[keep]
    k = len(centres)
    out = np.empty((2 * k, 2, patch_size, patch_size), np.uint8)
    if k:
        vis_p = cut_patches(vis, centres, patch_size)
        out[0::2, 0] = vis_p
        out[0::2, 1] = cut_patches(other, centres, patch_size)
        out[1::2, 0] = vis_p
        out[1::2, 1] = cut_patches(other, partner_centres, patch_size)
    labels = np.tile(np.array([1, 0], np.uint8), k)
    return out, labels
