"""Network-verified local matches: for VIS keypoints, score the other image (warped onto the VIS grid by the
current estimate) at every offset of a small window, in one batched pass through the runner; the best offset,
refined to sub-pixel on the score surface, is a correspondence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from rrl_edge.contracts import PATCH_SIZE
from rrl_edge.registration import geometry as geo
from rrl_edge.runtime.runner import Runner, score_pairs

HALF = PATCH_SIZE // 2


@dataclass(frozen=True)
class Window:
    radius: int  # pixels searched either way
    step: int
    keypoints: int  # at most this many VIS keypoints

    @property
    def offsets(self) -> np.ndarray:
        r = np.arange(-self.radius, self.radius + 1, self.step)
        return np.stack(np.meshgrid(r, r), -1).reshape(-1, 2)  # (C, 2) dx, dy; row-major over dy, dx


@dataclass
class Matches:
    vis: np.ndarray  # (M, 2) VIS points
    other: np.ndarray  # (M, 2) other-image points
    score: np.ndarray  # (M,) best network score
    pairs_scored: int

    def joined(self, more: "Matches") -> "Matches":
        """These matches and ``more`` (another set of keypoints in the same window) as one set."""
        return Matches(np.concatenate([self.vis, more.vis]), np.concatenate([self.other, more.other]),
                       np.concatenate([self.score, more.score]), self.pairs_scored + more.pairs_scored)


def overlap_mask(vis_shape: Tuple[int, int], other_shape: Tuple[int, int], a: np.ndarray, margin: int) -> np.ndarray:
    """VIS pixels whose patch, moved by up to ``margin``, stays inside both images under ``a``."""
    h, w = vis_shape
    full = np.full(other_shape, 255, np.uint8)
    cover = cv2.warpAffine(full, a, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) == 255
    k = 2 * (HALF + margin) + 1
    return cv2.erode(cover.astype(np.uint8), np.ones((k, k), np.uint8), borderValue=0).astype(bool)


def keypoints(vis: np.ndarray, mask: np.ndarray, count: int) -> np.ndarray:
    """Up to ``count`` Shi-Tomasi corners spread over the mask (minimum distance scales with the area)."""
    area = float(mask.sum())
    if area == 0 or count <= 0:
        return np.zeros((0, 2), np.float64)
    min_dist = max(8.0, 0.5 * np.sqrt(area / count))
    pts = cv2.goodFeaturesToTrack(vis, maxCorners=count, qualityLevel=0.005, minDistance=min_dist,
                                  mask=mask.astype(np.uint8), blockSize=7)
    if pts is None:
        return np.zeros((0, 2), np.float64)
    return np.rint(pts.reshape(-1, 2)).astype(np.float64)


def patches_at(img: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """(N, 64, 64) patches centred on integer points (all inside by construction)."""
    c = centers.astype(int)
    idx_y = c[:, 1, None] + np.arange(-HALF, HALF)[None]
    idx_x = c[:, 0, None] + np.arange(-HALF, HALF)[None]
    return img[idx_y[:, :, None], idx_x[:, None, :]]


def _subpixel(s: np.ndarray, i: int) -> float:
    """Parabola vertex through three logits around index ``i`` of a 1-D score profile (0 at the edge)."""
    if i <= 0 or i >= len(s) - 1:
        return 0.0
    l = np.log(np.clip(s[i - 1 : i + 2], 1e-6, 1 - 1e-6) / (1 - np.clip(s[i - 1 : i + 2], 1e-6, 1 - 1e-6)))
    den = l[0] - 2 * l[1] + l[2]
    return float(np.clip(0.5 * (l[0] - l[2]) / den, -0.5, 0.5)) if den < 0 else 0.0


def window_keypoints(vis: np.ndarray, other_shape: Tuple[int, int], a: np.ndarray, win: Window) -> np.ndarray:
    """The VIS keypoints ``match`` scores: up to ``win.keypoints`` corners whose patches stay inside both images
    at every offset of the window."""
    return keypoints(vis, overlap_mask(vis.shape, other_shape, a, win.radius + 1), win.keypoints)


def match(vis: np.ndarray, other: np.ndarray, a: np.ndarray, win: Window, runner: Runner,
          min_score: float = 0.5, batch_size: int = 256, kps: Optional[np.ndarray] = None) -> Matches:
    """Correspondences VIS -> other near the estimate ``a`` (2x3, VIS -> other), at ``kps`` (default: the
    window's keypoints)."""
    if kps is None:
        kps = window_keypoints(vis, other.shape, a, win)
    empty = Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), 0)
    if len(kps) == 0:
        return empty
    warped = geo.warp_to_vis(other, a, vis.shape)
    offs = win.offsets
    n, c = len(kps), len(offs)
    pairs = np.empty((n * c, 2, PATCH_SIZE, PATCH_SIZE), np.uint8)
    pairs[:, 0] = np.repeat(patches_at(vis, kps), c, axis=0)
    pairs[:, 1] = patches_at(warped, (kps[:, None, :] + offs[None]).reshape(-1, 2))
    scores = score_pairs(runner, pairs, batch_size=batch_size, source="register").reshape(n, c)
    side = int(round(np.sqrt(c)))
    best = scores.argmax(1)
    keep = scores[np.arange(n), best] >= min_score
    vis_pts, other_pts, sc = [], [], []
    for k in np.flatnonzero(keep):
        grid = scores[k].reshape(side, side)
        iy, ix = divmod(int(best[k]), side)
        d = offs[best[k]].astype(np.float64)
        if win.step == 1:
            d = d + [_subpixel(grid[iy, :], ix), _subpixel(grid[:, ix], iy)]
        vis_pts.append(kps[k])
        other_pts.append(geo.apply(a, kps[k] + d)[0])
        sc.append(float(scores[k, best[k]]))
    if not vis_pts:
        return Matches(empty.vis, empty.other, empty.score, n * c)
    return Matches(np.array(vis_pts), np.array(other_pts), np.array(sc), n * c)
