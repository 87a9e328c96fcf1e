"""Robust affine estimation with OpenCV's USAC/MAGSAC, then a least-squares refit on the inliers: of a full affine
or of a similarity (rotation, one scale, shift), or the one the data support (``motion="auto"``: Torr's GRIC).

Why: two cameras side by side looking at a distant scene differ by a similarity unless their pixels differ in
aspect (a frame resized to another aspect, another sensor format); the two extra parameters of an affine then fit
the matches' noise and local parallax, and that error grows towards the image corners, far from the matches.
Measured on RoadScene (network estimates projected onto the nearest similarity): FLIR_00288 14.8 -> 4.4 px,
FLIR_04722 4.6 -> 1.1 px. GRIC is not a cure everywhere: matches searched in a window around an affine estimate
agree with that affine by construction (FLIR_00288's second network round: affine rms 0.9 px, similarity 4.3 px,
yet the affine is 14.8 px off at the corners), so the pipeline lets GRIC decide only on template matching's
matches (registration.pipeline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from rrl_edge.errors import RRLEdgeError
from rrl_edge.registration import MOTIONS
from rrl_edge.registration import geometry as geo


class RegistrationFailed(RRLEdgeError):
    """The images were read, but no trustworthy affine was found (the command exits 1, not 2)."""


@dataclass
class Estimate:
    affine: np.ndarray  # 2x3, VIS -> other
    inliers: np.ndarray  # bool per correspondence

    @property
    def model(self) -> str:
        """What the refit is: "affine" or "similarity"."""
        return geo.motion_of(self.affine)

    @property
    def count(self) -> int:
        return int(self.inliers.sum())


def fit_affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares affine ``src`` -> ``dst`` (at least 3 points)."""
    x = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(x, dst, rcond=None)
    return sol.T.astype(np.float64)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``src`` -> ``dst``: [[a, -b, tx], [b, a, ty]] (at least 2 points)."""
    n = len(src)
    rows = np.zeros((2 * n, 4))
    rows[:n] = np.c_[src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)]
    rows[n:] = np.c_[src[:, 1], src[:, 0], np.zeros(n), np.ones(n)]
    (a, b, tx, ty), *_ = np.linalg.lstsq(rows, np.r_[dst[:, 0], dst[:, 1]], rcond=None)
    return np.array([[a, -b, tx], [b, a, ty]], np.float64)


def nearest_similarity(a: np.ndarray, width: int, height: int) -> np.ndarray:
    """The similarity closest to affine ``a`` over a grid of the image (for an estimate with no matches: ECC)."""
    xs, ys = np.meshgrid(np.linspace(0, width - 1, 9), np.linspace(0, height - 1, 9))
    grid = np.stack([xs.ravel(), ys.ravel()], 1)
    m = np.asarray(a, np.float64)
    return fit_similarity(grid, grid @ m[:, :2].T + m[:, 2])


def _sq_residuals(a: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.sum((src @ a[:, :2].T + a[:, 2] - dst) ** 2, axis=1)


def gric(sq_residuals: np.ndarray, sigma2: float, params: int) -> float:
    """Torr's Geometric Robust Information Criterion for a 2-D -> 2-D map (data dimension r = 4, model manifold
    d = 2): sum of min(e^2 / sigma^2, 2 (r - d)) + log(r) d n + log(r n) k; the lower, the better."""
    n, r, d = len(sq_residuals), 4, 2
    rho = np.minimum(sq_residuals / sigma2, 2.0 * (r - d))
    return float(rho.sum() + np.log(r) * d * n + np.log(r * n) * params)


AFFINE_MIN_GAIN_PX = 2.0  # "auto": how far an affine must move the matched area's corners from the similarity


def refit(src: np.ndarray, dst: np.ndarray, motion: str = "affine") -> np.ndarray:
    """Least-squares refit on inlier correspondences as ``motion``; "auto" takes the affine only where GRIC prefers
    it (noise scale from the affine's own residuals: the median of a 2-D Gaussian's squared norm is 2 ln 2 sigma^2)
    and it moves the corners of the matches' bounding box by more than AFFINE_MIN_GAIN_PX from the similarity.

    Why the second condition: on template matching's matches GRIC alone chose the affine on 59 of the 160 VIS-NIR
    pairs, whose truths are all similarities, and the similarity was closer on 47 of them (median corner error
    0.38 vs 0.53 px): local misfits (parallax, lens distortion) are significant to GRIC without being the images'
    aspect. A real aspect difference moves the corners by far more (a 3 % stretch of a 1024-px frame: about 8 px)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, not {motion!r}")
    if motion == "similarity" or (motion == "auto" and len(src) < 3):
        return fit_similarity(src, dst)
    aff = fit_affine(src, dst)
    if motion == "affine":
        return aff
    sim = fit_similarity(src, dst)
    e_aff, e_sim = _sq_residuals(aff, src, dst), _sq_residuals(sim, src, dst)
    sigma2 = max(float(np.median(e_aff)) / (2 * np.log(2)), 0.01)  # floor: 0.1 px, exact synthetic matches
    if gric(e_sim, sigma2, 4) <= gric(e_aff, sigma2, 6):
        return sim
    lo, hi = src.min(0), src.max(0)
    box = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    gain = float(np.linalg.norm(box @ (aff - sim)[:, :2].T + (aff - sim)[:, 2], axis=1).mean())
    return aff if gain > AFFINE_MIN_GAIN_PX else sim


def magsac_affine(src: np.ndarray, dst: np.ndarray, threshold: float, min_inliers: int = 6,
                  motion: str = "affine") -> Optional[Estimate]:
    """MAGSAC++ affine (USAC) from VIS points ``src`` to other-image points ``dst``, refit on its inliers as
    ``motion`` (MOTIONS); None when it fails. OpenCV's USAC has no similarity solver (estimateAffinePartial2D
    takes RANSAC or LMedS only), so MAGSAC picks the inliers under the affine and the refit constrains the model."""
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
    return Estimate(refit(src[inl], dst[inl], motion), inl)


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
