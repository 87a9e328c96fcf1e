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
    eps: float = 1e-4  # ECC's convergence tolerance
    max_move: float = 8.0  # px: mean corner displacement ECC may apply
    support_keypoints: int = 64  # patches the network scores under each affine of the polish guards
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
    h, w = vis.shape
    mask = np.ones(vis.shape, bool)
    for a in affines:
        mask &= overlap_mask(vis.shape, other.shape, a, 1)
    kps = keypoints(vis, mask, count)
    if len(kps) == 0:
        return np.zeros(len(affines)), 0
    pairs = np.empty((len(affines) * len(kps), 2, PATCH_SIZE, PATCH_SIZE), np.uint8)
    vis_patches = patches_at(vis, kps)
    for i, a in enumerate(affines):
        warped = cv2.warpAffine(other, a, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
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


def _guard(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, a1: np.ndarray, runner: Optional[Runner],
           cfg: RefineConfig, name: str, max_move: float) -> Tuple[bool, str, int]:
    """(keep ``a1`` instead of ``a0``, why not, pairs scored): at most ``max_move`` px and, with a runner, no lower
    network score (within ``max_score_drop``)."""
    h, w = vis.shape
    move = geo.corner_error(a1, a0, w, h)
    if move > max_move:
        return False, f"{name} moved the corners {move:.1f} px (limit {max_move:g})", 0
    if runner is None:
        return True, "", 0
    (s0, s1), scored = network_support(vis, other, [a0, a1], runner, cfg.support_keypoints)
    if scored and s1 < s0 - cfg.max_score_drop:
        return False, f"the network scores {name}'s affine lower ({s1:.3f} vs {s0:.3f})", scored
    return True, "", scored


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
    h, w = vis.shape
    gv, go = gradient_map(vis), gradient_map(other)
    out = []
    for a in affines:
        warped = cv2.warpAffine(go, np.asarray(a, np.float64), (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
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
               starts: Sequence[np.ndarray], ecc_results: Sequence[np.ndarray], runner: Runner, cfg: RefineConfig,
               motion: str) -> Tuple[Optional[np.ndarray], str, int]:
    """(an ECC affine that ECC from two starts agree on, or None; why not; pairs scored): within
    ``consensus_max_move`` px of ``a0``, correlating the gradient maps better than ``a0`` (``consensus_min_gain``)
    and scored a match by the network."""
    h, w = vis.shape
    ran = [_ecc_from(vis, other, s, cfg, motion) for s in starts]
    results = [a for a in [a1, *ecc_results, *ran] if a is not None]
    best = _agreed(results, cfg.consensus_px, w, h)
    if best is None:
        return None, f"ECC from {len(results)} starts: no two agree", 0
    move = geo.corner_error(best, a0, w, h)
    if move > cfg.consensus_max_move:
        return None, f"ECC from two starts agree {move:.1f} px away (limit {cfg.consensus_max_move:g})", 0
    r0, r1 = gradient_correlation(vis, other, [a0, best])
    if r1 <= 0 or r1 < cfg.consensus_min_gain * r0:
        return None, f"ECC from two starts agree, but the gradient maps correlate {r1:.3f} there vs {r0:.3f}", 0
    (score,), scored = network_support(vis, other, [best], runner, cfg.support_keypoints)
    if not scored or score < cfg.consensus_min_score:
        return None, f"ECC from two starts agree, but the network scores it {score:.3f}", scored
    return best, "", scored


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
    a, kept, notes, scored, inliers = a0, [], [], 0, 0
    a1 = _ecc_from(vis, other, a0, cfg, motion) if cfg.ecc else None
    ok = False
    if cfg.ecc and a1 is None:
        notes.append("ECC did not converge")
    elif a1 is not None:
        ok, why, n = _guard(vis, other, a, a1, runner, cfg, "ECC", cfg.max_move)
        scored += n
        if ok:
            a, kept = a1, kept + ["ecc"]
        else:
            notes.append(why)
    if cfg.ecc and not ok and (starts or ecc_results) and runner is not None:
        best, why, n = _consensus(vis, other, a0, a1, starts, ecc_results, runner, cfg, motion)
        scored += n
        if best is not None:
            a, kept = best, kept + ["ecc-consensus"]
        else:
            notes.append(why)
    if cfg.template is not None:
        est = template_affine(vis, other, a, cfg.template, motion)
        if est is None:
            notes.append(f"template matching: fewer than {cfg.template.min_inliers} local matches agree")
        else:
            ok, why, n = _guard(vis, other, a, est.affine, runner, cfg, "template matching", cfg.template_max_move)
            scored += n
            if ok:
                a, kept, inliers = est.affine, kept + ["template"], est.count
            else:
                notes.append(why)
    return Refinement(a, bool(kept), "; ".join(notes), geo.corner_error(a, a0, w, h), scored, tuple(kept), inliers,
                      a1)
