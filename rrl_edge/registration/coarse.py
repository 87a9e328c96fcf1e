"""Coarse alignment without the network: rotation/scale hypotheses, each with the shift found by phase
correlation of gradient-magnitude maps (edges survive the change of spectrum better than intensities do),
searched on a small image, then again around the winner on a larger one.

Why gradients and phase correlation: they need no keypoints and no descriptor that agrees across spectra, cost a
few FFTs per hypothesis, and cover shifts of a large part of the image; the network then only has to look in a
window of a few pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from rrl_edge.registration import geometry as geo


@dataclass(frozen=True)
class CoarseConfig:
    max_rotation: float = 15.0  # degrees searched either way
    min_scale: float = 0.9
    max_scale: float = 1.1
    small_side: int = 256  # long side of the first search level
    rotation_step: float = 2.0  # degrees, first level
    scale_step: float = 0.05  # first level
    fine_side: int = 640  # long side of the second level
    # the second level's (rotation, scale) steps: a 3x3 grid around the current best at each step in turn, so
    # that 17 hypotheses per winner reach the 0.5-degree grid a full one reaches with 45 (same winners on the
    # validation pairs, benchmarks/coarse_search.py)
    fine_steps: Tuple[Tuple[float, float], ...] = ((1.0, 0.025), (0.5, 0.0125))
    keep: int = 3  # first-level winners refined at the second level
    # Images whose long side is under ``small_image`` px (RoadScene's ~500 px, a 640x512 thermal core) lose their fine
    # edges at 256 px: the first level runs at ``small_image_side`` and refines ``small_image_keep`` winners. On the
    # 44 RoadScene test pairs the best hypothesis within 25 px of the truth went from 40 to 42 (4.1 vs 2.0 s/pair,
    # benchmarks/coarse_search.py); VIS-NIR's images (768 px and more) keep the 256-px level that finds all 160.
    # Validation (RoadScene's training split, 40 pairs): 4 winners find what 6 found (97.5 % within 10 and 25 px),
    # 0.20 vs 0.26 s per pair.
    small_image: int = 700
    small_image_side: int = 384
    small_image_keep: int = 4

    def first_level(self, long_side: int) -> Tuple[int, int]:
        """(long side of the first search level, winners kept) for an image of this long side."""
        if long_side < self.small_image:
            return self.small_image_side, self.small_image_keep
        return self.small_side, self.keep


@dataclass
class Hypothesis:
    affine: np.ndarray  # VIS -> other, full-resolution pixels
    response: float  # phase-correlation peak strength
    angle: float
    scale: float


def gradient_map(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude, locally contrast-normalised so a dim spectrum weighs as much as a bright one."""
    f = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 1.0)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    local = cv2.GaussianBlur(mag, (0, 0), 8.0) + 1e-3 * float(mag.mean() + 1e-6)
    return np.sqrt(mag / local).astype(np.float32)


def _resize(img: np.ndarray, f: float) -> np.ndarray:
    size = (max(1, int(round(img.shape[1] * f))), max(1, int(round(img.shape[0] * f))))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _steps(lo: float, hi: float, step: float) -> np.ndarray:
    n = max(1, int(round((hi - lo) / step)))
    return np.linspace(lo, hi, n + 1)


class _Level:
    """Gradient maps of both images at one resolution, and the shift search for one hypothesis."""

    def __init__(self, vis: np.ndarray, other: np.ndarray, long_side: int) -> None:
        self.f = min(1.0, long_side / float(max(vis.shape)))
        self.gv = gradient_map(_resize(vis, self.f))
        self.go = gradient_map(_resize(other, self.f))
        h, w = self.gv.shape
        self.window = cv2.createHanningWindow((w, h), cv2.CV_32F)
        self.cv = ((w - 1) / 2.0, (h - 1) / 2.0)
        self.co = ((self.go.shape[1] - 1) / 2.0, (self.go.shape[0] - 1) / 2.0)

    def evaluate(self, angle: float, scale: float, center_shift: Tuple[float, float] = (0.0, 0.0)) -> Hypothesis:
        """Best shift for a rotation/scale about the centres; the result is in full-resolution pixels."""
        co = (self.co[0] + center_shift[0] * self.f, self.co[1] + center_shift[1] * self.f)
        a = geo.similarity(angle, scale, self.cv, co)
        h, w = self.gv.shape
        warped = geo.warp_to_vis(self.go, a, (h, w))
        (dx, dy), resp = cv2.phaseCorrelate(self.gv, warped, self.window)
        # warped(p + d) ~ vis(p): the VIS point p sits at a(p + d) in the other image
        small = geo.compose(a, geo.translation(dx, dy))
        return Hypothesis(geo.scale_affine(small, 1.0 / self.f, 1.0 / self.f), float(resp), angle, scale)


def coarse_align(vis: np.ndarray, other: np.ndarray, cfg: CoarseConfig = CoarseConfig()) -> List[Hypothesis]:
    """Hypotheses VIS -> other, best first: a grid search on a small image, winners refined on a larger one."""
    side, keep = cfg.first_level(max(vis.shape))
    small = _Level(vis, other, side)
    first = [small.evaluate(a, s) for a in _steps(-cfg.max_rotation, cfg.max_rotation, cfg.rotation_step)
             for s in np.exp(_steps(np.log(cfg.min_scale), np.log(cfg.max_scale), cfg.scale_step))]
    first.sort(key=lambda h: -h.response)
    fine = _Level(vis, other, cfg.fine_side)
    out: List[Hypothesis] = []
    for h in _distinct(first, keep):
        out.append(_climb(fine, h, _center_shift(h.affine, vis.shape, other.shape), cfg.fine_steps))
    out.sort(key=lambda h: -h.response)
    return out


def _climb(level: _Level, start: Hypothesis, shift: Tuple[float, float],
           steps: Sequence[Tuple[float, float]]) -> Hypothesis:
    """The best of a 3x3 (rotation, scale) grid around the current best, once per step, finest last."""
    best = level.evaluate(start.angle, start.scale, shift)
    for rot, sc in steps:
        centre = best
        for a in (centre.angle - rot, centre.angle, centre.angle + rot):
            for s in (centre.scale * np.exp(-sc), centre.scale, centre.scale * np.exp(sc)):
                if a == centre.angle and s == centre.scale:
                    continue
                h = level.evaluate(a, s, shift)
                if h.response > best.response:
                    best = h
    return best


def _center_shift(a: np.ndarray, vis_shape: Sequence[int], other_shape: Sequence[int]) -> Tuple[float, float]:
    """Where the VIS centre lands, relative to the other image's centre (full-resolution pixels)."""
    cv = np.array([(vis_shape[1] - 1) / 2.0, (vis_shape[0] - 1) / 2.0])
    co = np.array([(other_shape[1] - 1) / 2.0, (other_shape[0] - 1) / 2.0])
    d = geo.apply(a, cv)[0] - co
    return float(d[0]), float(d[1])


def _distinct(hyps: List[Hypothesis], k: int) -> List[Hypothesis]:
    """The ``k`` strongest hypotheses that differ in rotation or scale by more than one grid step."""
    out: List[Hypothesis] = []
    for h in hyps:
        if all(abs(h.angle - o.angle) > 2.5 or abs(np.log(h.scale / o.scale)) > 0.06 for o in out):
            out.append(h)
        if len(out) == k:
            break
    return out
