"""Dense refinement of an affine: ECC (OpenCV's ``findTransformECC``) on the gradient-magnitude maps the coarse
stage uses, coarse to fine, then local template matching (``template``) for the last fraction of a pixel; each
accepted only when the network does not score the result worse.

Why: the network round finds the right place within a few pixels wherever the spectra differ most, but its
score surface is flat within about +-2 px (a matcher trained on exactly aligned positives), so its sub-pixel
accuracy is limited. ECC uses every edge pixel of the overlap and reaches sub-pixel accuracy where the two
spectra share edges (VIS-NIR), but drifts where they do not (VIS-LWIR: measured 4.6 -> 6.0 px median on
RoadScene from the coarse estimate). So it is a polish with two guards: it may move the estimate's corners by at
most ``max_move`` pixels, and the network's mean score of patches at the same places under the refined affine
must not drop by more than ``max_score_drop``.

Where the network's score refuses ECC, a second, independent witness can overrule it: ECC run from other starts
(``starts``: the coarse hypothesis, SIFT + MAGSAC's affine; ``ecc_results``: ECC already run from such a start)
converging on the same affine (``consensus_px``), within ``consensus_max_move`` of the estimate. Why: on
low-texture scenes the network's score is biased, not only flat (VIS-NIR field 0002, a validation pair: 0.80 at the
network round's estimate, 7 px off, against 0.69 at ECC's, 3.9 px off), while ECC's basin, reached from two starts
that did not come from each other, is the dense path's own sign of success (registration.pipeline). It must also
correlate the gradient maps clearly better than the estimate: on VIS-LWIR, ECC from every start can agree on one
wrong basin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from rrl_edge.contracts import PATCH_SIZE
from rrl_edge.registration import geometry as geo
from rrl_edge.registration.coarse import gradient_map
from rrl_edge.registration.estimate import nearest_similarity
from rrl_edge.registration.matching import keypoints, overlap_mask, patches_at
from rrl_edge.registration.template import TemplateConfig, template_affine
from rrl_edge.runtime.runner import Runner, score_pairs


@dataclass(frozen=True)
class RefineConfig:
    """The polish (ECC, then template matching) and its guards. Each field's default, whether it is a product
    setting or an experiment, and the measurement that set it: docs/registration-settings.md."""

    levels: Tuple[Tuple[float, int], ...] = ((0.25, 5), (0.5, 5), (1.0, 5), (1.0, 1))  # ECC's (scale, smoothing)
    iterations: int = 100  # ECC iterations per level
    eps: float = 1e-3  # ECC's convergence tolerance: the change of its correlation coefficient between iterations
    max_move: float = 8.0  # px: mean corner displacement ECC may apply
    support_keypoints: int = 32  # VIS keypoints the network scores under each affine the polish guards compare
    max_score_drop: float = 0.02  # mean network score the refined affine may lose
    ecc: bool = True  # False: template matching only (the dense path's check of an independent estimate)
    template: Optional[TemplateConfig] = TemplateConfig()  # local template matching after ECC; None: ECC only
    template_max_move: float = 4.0  # px: the template search radius; a larger move is not a polish
    consensus_px: float = 1.0  # px: ECC results from two starts this close (mean corner distance) agree
    consensus_max_move: float = 16.0  # px: how far an agreed ECC affine may move the estimate
    consensus_min_gain: float = 1.1  # factor an agreed ECC affine must raise the gradient maps' correlation by
    consensus_min_score: float = 0.5  # the network's mean score an agreed ECC affine needs (its threshold)


def ecc_affine(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, cfg: RefineConfig = RefineConfig()) -> Optional[np.ndarray]:
    """ECC from ``a0`` (VIS -> other) on gradient maps, level by level; None when every level fails to converge.

    ``findTransformECC(template, input, warp)`` finds ``warp`` with input(warp(x)) ~ template(x): with the VIS
    map as template that is exactly this project's VIS -> other convention.
    """
    a = np.asarray(a0, np.float64)
    converged = False
    maps = {}
    for f, smoothing in cfg.levels:
        if f not in maps:
            maps[f] = gradient_map(_scaled(vis, f)), gradient_map(_scaled(other, f))
        gv, go = maps[f]
        w = geo.scale_affine(a, f, f).astype(np.float32)
        try:
            _, w = cv2.findTransformECC(gv, go, w, cv2.MOTION_AFFINE,
                                        (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, cfg.iterations, cfg.eps),
                                        None, smoothing)
        except cv2.error:  # did not converge at this level: keep the estimate, try the next one
            continue
        if not np.isfinite(w).all():
            continue
        a, converged = geo.scale_affine(w.astype(np.float64), 1.0 / f, 1.0 / f), True
    return a if converged else None


def _scaled(img: np.ndarray, f: float) -> np.ndarray:
    if f == 1.0:
        return img
    return cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)


def network_support(vis: np.ndarray, other: np.ndarray, affines: Sequence[np.ndarray], runner: Runner,
                    count: int) -> Tuple[np.ndarray, int]:
    """Mean network score of VIS patches against the other image's patches at the same places, under each affine
    (the same VIS keypoints for all, inside every overlap); and how many pairs were scored."""
    mask = np.ones(vis.shape, bool)
    for a in affines:
        mask &= overlap_mask(vis.shape, other.shape, a, 1)
    kps = keypoints(vis, mask, count)
    if len(kps) == 0:
        return np.zeros(len(affines)), 0
    pairs = np.empty((len(affines) * len(kps), 2, PATCH_SIZE, PATCH_SIZE), np.uint8)
    vis_patches = patches_at(vis, kps)
    for i, a in enumerate(affines):
        warped = geo.warp_to_vis(other, a, vis.shape)
        pairs[i * len(kps) : (i + 1) * len(kps), 0] = vis_patches
        pairs[i * len(kps) : (i + 1) * len(kps), 1] = patches_at(warped, kps)
    scores = score_pairs(runner, pairs, batch_size=256, source="register").reshape(len(affines), len(kps))
    return scores.mean(1), int(pairs.shape[0])


@dataclass
class Refinement:
    affine: np.ndarray
    accepted: bool  # at least one polish kept
    reason: str  # why a polish was refused ("; " between stages), empty when all were kept
    move_px: float  # mean corner displacement of the kept polish(es)
    pairs_scored: int
    kept: Tuple[str, ...] = ()  # the polishes kept, in order: "ecc" (or "ecc-consensus"), "template"
    inliers: int = 0  # local matches that agree on the template fit (0 when it was not kept)
    ecc: Optional[np.ndarray] = None  # ECC's own result from ``a0``, kept or not (None: not run or not converged)
    network_seconds: float = 0.0  # of the polish's time, spent scoring network pairs for its guards


class Support:
    """The network's scores of one set of VIS keypoints under each affine a polish compares, kept per affine.

    Why one set: the polish scores the estimate against ECC's affine, then ECC's against template matching's, then
    (where the network refused ECC) an agreed ECC affine: with the keypoints fixed once, inside the estimate's
    overlap, an affine scored for one guard is not scored again for the next (on the network path 64 network
    pairs of 256 per pair were such repeats). A keypoint whose patch leaves the other image under an affine is left
    out of every comparison that affine is in."""

    def __init__(self, vis: np.ndarray, other: np.ndarray, a0: np.ndarray, runner: Runner, count: int) -> None:
        self.vis, self.other, self.runner, self.a0, self.count = vis, other, runner, a0, count
        self.pairs_scored = 0
        self.seconds = 0.0  # spent scoring network pairs (benchmarks tell the network's time from the rest)
        self._kps: Optional[np.ndarray] = None
        self._vis_patches = np.zeros((0, PATCH_SIZE, PATCH_SIZE), np.uint8)
        self._scored: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (affine, scores, inside)

    @property
    def kps(self) -> np.ndarray:
        """The VIS keypoints, found on first use (a polish refused by its move limit scores nothing)."""
        if self._kps is None:
            self._kps = keypoints(self.vis, overlap_mask(self.vis.shape, self.other.shape, self.a0, 1), self.count)
            self._vis_patches = patches_at(self.vis, self._kps)
        return self._kps

    def _of(self, a: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, inside) of every keypoint under ``a``, scored once per affine."""
        for b, scores, inside in self._scored:
            if np.array_equal(a, b):
                return scores, inside
        xy = self.kps.astype(int)
        inside = overlap_mask(self.vis.shape, self.other.shape, a, 1)[xy[:, 1], xy[:, 0]]
        warped = geo.warp_to_vis(self.other, a, self.vis.shape)
        pairs = np.stack([self._vis_patches, patches_at(warped, self.kps)], axis=1)
        t = time.perf_counter()
        scores = score_pairs(self.runner, pairs, batch_size=256, source="register")
        self.seconds += time.perf_counter() - t
        self.pairs_scored += len(pairs)
        self._scored.append((np.array(a, copy=True), scores, inside))
        return scores, inside

    def means(self, affines: Sequence[np.ndarray]) -> np.ndarray:
        """Mean score under each affine, over the keypoints inside the other image under all of them (zeros when
        none is)."""
        if len(self.kps) == 0:
            return np.zeros(len(affines))
        scored = [self._of(a) for a in affines]
        both = np.logical_and.reduce([inside for _, inside in scored])
        if not both.any():
            return np.zeros(len(affines))
        return np.array([float(scores[both].mean()) for scores, _ in scored])


def _guard(a0: np.ndarray, a1: np.ndarray, width: int, height: int, support: Optional[Support], cfg: RefineConfig,
           name: str, max_move: float) -> Tuple[bool, str]:
    """(keep ``a1`` instead of ``a0``, why not): at most ``max_move`` px and, with the network's ``support``, no
    lower network score (within ``max_score_drop``)."""
    move = geo.corner_error(a1, a0, width, height)
    if move > max_move:
        return False, f"{name} moved the corners {move:.1f} px (limit {max_move:g})"
    if support is None:
        return True, ""
    s0, s1 = support.means([a0, a1])
    if s1 < s0 - cfg.max_score_drop:
        return False, f"the network scores {name}'s affine lower ({s1:.3f} vs {s0:.3f})"
    return True, ""


def _ecc_from(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, cfg: RefineConfig,
              motion: str) -> Optional[np.ndarray]:
    """ECC from ``a0``, projected onto the nearest similarity unless ``motion`` is "affine"."""
    a1 = ecc_affine(vis, other, a0, cfg)
    if a1 is None or motion == "affine":
        return a1
    h, w = vis.shape
    return nearest_similarity(a1, w, h)


def gradient_correlation(vis: np.ndarray, other: np.ndarray, affines: Sequence[np.ndarray]) -> List[float]:
    """OpenCV's ECC value (zero-mean normalised correlation, ``cv2.computeECC``) of the two gradient maps over the
    overlap under each affine (VIS -> other): what ECC's finest level maximises. The maps are computed once."""
    gv, go = gradient_map(vis), gradient_map(other)
    out = []
    for a in affines:
        warped = geo.warp_to_vis(go, a, vis.shape)
        mask = overlap_mask(vis.shape, other.shape, a, 0)
        out.append(float(cv2.computeECC(gv, warped, mask.astype(np.uint8))) if mask.sum() >= 2 else 0.0)
    return out


def _agreed(results: Sequence[np.ndarray], tol: float, width: int, height: int) -> Optional[np.ndarray]:
    """The ECC result that the most others agree with (within ``tol`` px), when at least one does; ties go to the
    earlier one (the first is ECC from the estimate itself)."""
    best, votes = None, 0
    for i, a in enumerate(results):
        n = sum(1 for j, b in enumerate(results) if j != i and geo.corner_error(a, b, width, height) <= tol)
        if n > votes:
            best, votes = a, n
    return best


def _consensus(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, a1: Optional[np.ndarray],
               starts: Sequence[np.ndarray], ecc_results: Sequence[np.ndarray], support: Support, cfg: RefineConfig,
               motion: str) -> Tuple[Optional[np.ndarray], str]:
    """(an ECC affine that ECC from two starts agree on, or None; why not): within
    ``consensus_max_move`` px of ``a0``, correlating the gradient maps better than ``a0`` (``consensus_min_gain``)
    and scored a match by the network."""
    h, w = vis.shape
    ran = [_ecc_from(vis, other, s, cfg, motion) for s in starts]
    results = [a for a in [a1, *ecc_results, *ran] if a is not None]
    best = _agreed(results, cfg.consensus_px, w, h)
    if best is None:
        return None, f"ECC from {len(results)} starts: no two agree"
    move = geo.corner_error(best, a0, w, h)
    if move > cfg.consensus_max_move:
        return None, f"ECC from two starts agree {move:.1f} px away (limit {cfg.consensus_max_move:g})"
    r0, r1 = gradient_correlation(vis, other, [a0, best])
    if r1 <= 0 or r1 < cfg.consensus_min_gain * r0:
        return None, f"ECC from two starts agree, but the gradient maps correlate {r1:.3f} there vs {r0:.3f}"
    (score,) = support.means([best])
    if score < cfg.consensus_min_score:
        return None, f"ECC from two starts agree, but the network scores it {score:.3f}"
    return best, ""


def refine(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, runner: Optional[Runner],
           cfg: RefineConfig = RefineConfig(), motion: str = "affine",
           starts: Sequence[np.ndarray] = (), ecc_results: Sequence[np.ndarray] = ()) -> Refinement:
    """ECC from ``a0``, then local template matching from where ECC left it (``template``); each is kept only when
    it moves the corners by at most its limit and (with a runner) the network scores it no worse than the estimate
    before it, within ``max_score_drop``. Refused or failed stages leave the estimate as it was, with the reason.
    ``motion`` (registration.MOTIONS) constrains the template refit ("auto": GRIC); unless it is "affine", ECC's
    affine is projected onto the nearest similarity (ECC has no similarity motion: MOTION_EUCLIDEAN keeps the
    scale at 1), so only template matching's own evidence can make the result an affine. With a runner, ECC from
    ``starts`` (other estimates of the same pair) and ``ecc_results`` (ECC already run from such estimates) can
    stand in for a refused or failed ECC (``_consensus``); ``Refinement.ecc`` is ECC's own result, for a later
    call's ``ecc_results``."""
    h, w = vis.shape
    a, kept, notes, inliers = a0, [], [], 0
    support = Support(vis, other, a0, runner, cfg.support_keypoints) if runner is not None else None
    a1 = _ecc_from(vis, other, a0, cfg, motion) if cfg.ecc else None
    ok = False
    if cfg.ecc and a1 is None:
        notes.append("ECC did not converge")
    elif a1 is not None:
        ok, why = _guard(a, a1, w, h, support, cfg, "ECC", cfg.max_move)
        if ok:
            a, kept = a1, kept + ["ecc"]
        else:
            notes.append(why)
    if cfg.ecc and not ok and (starts or ecc_results) and support is not None:
        best, why = _consensus(vis, other, a0, a1, starts, ecc_results, support, cfg, motion)
        if best is not None:
            a, kept = best, kept + ["ecc-consensus"]
        else:
            notes.append(why)
    if cfg.template is not None:
        est = template_affine(vis, other, a, cfg.template, motion)
        if est is None:
            notes.append(f"template matching: fewer than {cfg.template.min_inliers} local matches agree")
        else:
            ok, why = _guard(a, est.affine, w, h, support, cfg, "template matching", cfg.template_max_move)
            if ok:
                a, kept, inliers = est.affine, kept + ["template"], est.count
            else:
                notes.append(why)
    scored, seconds = (support.pairs_scored, support.seconds) if support is not None else (0, 0.0)
    return Refinement(a, bool(kept), "; ".join(notes), geo.corner_error(a, a0, w, h), scored, tuple(kept), inliers,
                      a1, seconds)
