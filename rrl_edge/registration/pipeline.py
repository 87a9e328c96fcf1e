"""The registration pipeline: coarse hypotheses; then the dense path (ECC and local template matching from the best
hypothesis, or template matching from SIFT + MAGSAC's affine), taken when the two estimates agree and the network
scores the result as a match; otherwise one round of network-verified matches in a window around each coarse
hypothesis, then MAGSAC, then the same polish, which the network must not score worse unless ECC from two other
starts agrees with it (``refine``). Every answer
carries its confidence (``confidence``). Stages can be switched off to measure what each buys (``--ablate`` of
``register`` and ``register-eval``); each was kept or deleted by that ablation on validation pairs
(docs/registration-settings.md).

Why the dense path first: where the spectra share edges (VIS-NIR) two estimates agreeing within 1.5 px is a
reliable sign of success, and the network then only checks the answer; on the validation pairs it gives the same
answers as the network round in half the time. Where they do not agree (low texture, VIS-LWIR, a wrong coarse
hypothesis) the network round decides."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from rrl_edge.registration import DEFAULT_MOTION, NETWORK_KEYPOINTS
from rrl_edge.registration import geometry as geo
from rrl_edge.registration.confidence import Confidence, measure as measure_confidence
from rrl_edge.registration.coarse import CoarseConfig, coarse_align
from rrl_edge.registration.estimate import Estimate, RegistrationFailed, magsac_affine, plausible
from rrl_edge.registration.matching import Matches, Window, match, window_keypoints
from rrl_edge.registration.refine import RefineConfig, Refinement, refine
from rrl_edge.registration.sift_baseline import sift_register
from rrl_edge.runtime.runner import Runner


@dataclass(frozen=True)
class RegisterConfig:
    """What a registration runs. Each field's default, whether it is a product setting or an experiment (a switch
    that leaves a stage out), and the measurement that set it: docs/registration-settings.md."""

    coarse: CoarseConfig = CoarseConfig()  # the coarse search (no network)
    # the network round: offsets scored around a hypothesis; it finds the match within the coarse error, the polish
    # takes it to sub-pixel (a second, finer round bought nothing on the validation pairs at 4x the network pairs)
    window: Window = Window(radius=8, step=4, keypoints=NETWORK_KEYPOINTS)
    threshold: float = 4.0  # MAGSAC inlier threshold (px) of the network round
    # the network round scores every other keypoint first and stops there when at least this fraction of them agree
    # on one affine (MAGSAC inliers); otherwise it scores the rest and fits all. 0: every keypoint at once
    early_exit: float = 0.75
    min_inliers: int = 8  # fewest MAGSAC inliers that make the network round's affine
    min_inlier_ratio: float = 0.3  # of the keypoints whose best score passed
    hypotheses: int = 2  # coarse hypotheses tried by the network round, best first, until one verifies
    network: bool = True  # experiment: False stops after the coarse stage (then the unguarded polish)
    dense_first: bool = True  # experiment: False skips the dense path, the network round runs on every pair
    dense_agree: float = 1.5  # px: template matching may move ECC's estimate at most this much on the dense path
    dense_min_score: float = 0.5  # the network's mean score at the dense estimate (a match, by its threshold)
    classical: bool = True  # experiment: False drops SIFT + MAGSAC's affine as the second dense start
    consensus: bool = True  # experiment: False lets the network's refusal of ECC's polish stand
    refine: Optional[RefineConfig] = RefineConfig()  # the polish; None (experiment): no polish, no dense path
    motion: str = DEFAULT_MOTION  # what the fits may be (registration.MOTIONS)


@dataclass
class RegisterResult:
    affine: np.ndarray
    inliers: int
    seconds: float
    pairs_scored: int
    stages: Dict[str, float] = field(default_factory=dict)  # seconds per stage
    hypothesis: int = 0
    refined: Optional[bool] = None  # a polish kept (True), all refused (False) or not tried (None)
    refine_note: str = ""  # why a polish was refused
    polish: Tuple[str, ...] = ()  # the polishes kept: "ecc" (or "ecc-consensus"), "template"
    path: str = "network"  # "dense" (ECC and template agreed), "network" (network round) or "coarse" (no network)
    start: str = "coarse"  # where the accepted estimate started: "coarse" (hypothesis ``hypothesis``) or "sift"
    unrefined: Optional[np.ndarray] = None  # the estimate before the polish (register-eval's ablation for free)
    work_scale: float = 1.0  # the VIS image's resize factor while registering (below 1 for images beyond WORK_SIDE)
    confidence: Optional[Confidence] = None  # how sure the answer is (None: registered without a runner)

    @property
    def model(self) -> str:
        """What the result is: "similarity" or "affine"."""
        return geo.motion_of(self.affine)

    def to_json(self) -> Dict[str, object]:
        return {
            "affine": [[float(v) for v in row] for row in self.affine],
            "inliers": int(self.inliers),
            "seconds": round(float(self.seconds), 4),
            "pairs_scored": int(self.pairs_scored),
            "hypothesis": int(self.hypothesis),
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
            "refined": self.refined,
            "refine_note": self.refine_note,
            "polish": list(self.polish),
            "path": self.path,
            "start": self.start,
            "model": self.model,
            "work_scale": round(float(self.work_scale), 6),
            **({"confidence": self.confidence.to_json()} if self.confidence is not None else {}),
        }


def _in_range(a: np.ndarray, cfg: RegisterConfig) -> bool:
    """An affine within the coarse search's rotation and scale range (anything else is a wrong match)."""
    return plausible(a, cfg.coarse.max_rotation, cfg.coarse.min_scale, cfg.coarse.max_scale)


def _fit(m: Matches, cfg: RegisterConfig) -> Optional[Estimate]:
    """MAGSAC on the network round's matches (a similarity unless the motion is "affine")."""
    return magsac_affine(m.vis, m.other, cfg.threshold, cfg.min_inliers,
                         "affine" if cfg.motion == "affine" else "similarity")


def _network_round(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, runner: Runner, cfg: RegisterConfig,
                   stages: Dict[str, float]) -> Tuple[Optional[Estimate], int, str]:
    """The network round from ``a0``: scored offsets at every other keypoint, then MAGSAC; the other half of the
    keypoints only where the first half does not agree (``early_exit``); (estimate or None, pairs scored, why it
    failed)."""
    t = time.perf_counter()
    kps = window_keypoints(vis, other.shape, a0, cfg.window)
    first = kps[::2] if cfg.early_exit > 0 else kps
    m = match(vis, other, a0, cfg.window, runner, kps=first)
    est = _fit(m, cfg)
    if len(first) < len(kps) and (est is None or est.count < cfg.early_exit * len(first)
                                  or not _in_range(est.affine, cfg)):
        m = m.joined(match(vis, other, a0, cfg.window, runner, kps=kps[1::2]))
        est = _fit(m, cfg)
    stages["network"] = stages.get("network", 0.0) + time.perf_counter() - t
    if est is None:
        return None, m.pairs_scored, f"{len(m.vis)} network matches, no consistent affine"
    if est.count < cfg.min_inlier_ratio * len(m.vis):
        return None, m.pairs_scored, f"only {est.count} of {len(m.vis)} network matches agree"
    if not _in_range(est.affine, cfg):
        return None, m.pairs_scored, "affine outside the searched range"
    return est, m.pairs_scored, ""


def _polish(vis: np.ndarray, other: np.ndarray, res: RegisterResult, runner: Optional[Runner],
            cfg: RegisterConfig, t0: float, starts: Sequence[np.ndarray] = (),
            ecc_results: Sequence[np.ndarray] = ()) -> RegisterResult:
    """The polish (ECC, then template matching) of a finished estimate, each kept only when its guards pass, ECC
    from ``starts`` (or its ``ecc_results`` from them) standing in for a refused ECC (refine.refine); timed as the
    stage "refine"."""
    if cfg.refine is None:
        return res
    t = time.perf_counter()
    res.unrefined = res.affine
    r = refine(vis, other, res.affine, runner, cfg.refine, cfg.motion, starts, ecc_results)
    res.stages["refine"] = time.perf_counter() - t
    if r.network_seconds:  # part of "refine": its guards' network pairs (what an engine's speed changes)
        res.stages["refine_network"] = r.network_seconds
    res.affine, res.refined, res.refine_note, res.polish = r.affine, r.accepted, r.reason, r.kept
    res.pairs_scored += r.pairs_scored
    res.seconds = time.perf_counter() - t0
    return res


def _dense(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, runner: Runner, cfg: RegisterConfig,
           stages: Dict[str, float], t0: float,
           ecc: bool = True) -> Tuple[Optional[RegisterResult], int, Optional[Refinement]]:
    """The dense path from ``a0``: ECC (unless ``a0`` is already an independent estimate: ``ecc=False``), then
    template matching that moves that estimate by at most ``dense_agree`` px, and the network's mean score there at
    least ``dense_min_score``; (None when any of it fails, pairs scored, its polish from ``a0``, None when the
    configuration has no dense path)."""
    if cfg.refine is None or cfg.refine.template is None or not cfg.dense_first:
        return None, 0, None
    t = time.perf_counter()
    r = refine(vis, other, a0, None, replace(cfg.refine, template_max_move=cfg.dense_agree, ecc=ecc), cfg.motion)
    stages["dense"] = stages.get("dense", 0.0) + time.perf_counter() - t
    if r.kept != (("ecc", "template") if ecc else ("template",)):
        return None, 0, r
    t = time.perf_counter()
    # the confidence check's own scores: its mean at the estimate is the dense path's check, and the answer's
    # confidence comes with it
    sure = measure_confidence(vis, other, r.affine, runner)
    stages["dense_check"] = stages.get("dense_check", 0.0) + time.perf_counter() - t
    scored = sure.pairs
    if not sure.keypoints or sure.score < cfg.dense_min_score:
        return None, scored, r
    res = RegisterResult(r.affine, r.inliers, time.perf_counter() - t0, scored, stages, refined=True, unrefined=a0,
                         polish=r.kept, path="dense", confidence=sure)
    return res, scored, r


def _dense_starts(vis: np.ndarray, other: np.ndarray, coarse: np.ndarray, cfg: RegisterConfig,
                 stages: Dict[str, float]) -> Iterator[Tuple[str, np.ndarray]]:
    """Where the dense path starts: the best coarse hypothesis, then (``classical``) SIFT + MAGSAC's affine when
    it lies in the searched range; computed lazily, so a pair the coarse start registers never runs SIFT."""
    if not cfg.dense_first:
        return
    yield "coarse", coarse
    if cfg.classical:
        t = time.perf_counter()
        a, _, _ = sift_register(vis, other)
        stages["classical"] = time.perf_counter() - t
        if a is not None and _in_range(a, cfg):
            yield "sift", a


# Longest side registered at full resolution. Every stage's memory and time grow with the pixel count (a
# 2800x2240 pair peaked at 1.7 GB, a 7000x7000 one at 11.7 GB) while 64-pixel patches of so large an image hold
# less structure than the cameras the network learnt from (640x512); larger images are registered at this size
# (cv2.INTER_AREA) and the affine is scaled back to full resolution.
WORK_SIDE = 1600


def _to_work_size(img: np.ndarray) -> Tuple[np.ndarray, float]:
    f = min(1.0, WORK_SIDE / max(img.shape[:2]))
    if f >= 1.0:
        return img, 1.0
    size = (max(1, round(img.shape[1] * f)), max(1, round(img.shape[0] * f)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return small, small.shape[1] / img.shape[1]


def register_images(vis: np.ndarray, other: np.ndarray, runner: Optional[Runner], cfg: RegisterConfig = RegisterConfig()) -> RegisterResult:
    """Affine VIS -> other of two grayscale images, with its confidence when a runner scored it; raises
    RegistrationFailed with the reason. Images beyond WORK_SIDE are registered downscaled (the confidence measured
    there), the affine returned at full resolution."""
    small_vis, fv = _to_work_size(vis)
    small_other, fo = _to_work_size(other)
    res = _register_full(small_vis, small_other, runner, cfg)
    if runner is not None and cfg.network and res.confidence is None:
        t = time.perf_counter()
        res.confidence = measure_confidence(small_vis, small_other, res.affine, runner)
        res.stages["confidence"] = time.perf_counter() - t
        res.pairs_scored += res.confidence.pairs
        res.seconds += res.stages["confidence"]
    if fv == 1.0 and fo == 1.0:
        return res
    res.affine = geo.scale_affine(res.affine, 1.0 / fv, 1.0 / fo)
    if res.unrefined is not None:
        res.unrefined = geo.scale_affine(res.unrefined, 1.0 / fv, 1.0 / fo)
    res.work_scale = fv
    return res


def _register_full(vis: np.ndarray, other: np.ndarray, runner: Optional[Runner], cfg: RegisterConfig) -> RegisterResult:
    t0 = time.perf_counter()
    stages: Dict[str, float] = {}
    hyps = coarse_align(vis, other, cfg.coarse)
    stages["coarse"] = time.perf_counter() - t0
    if not cfg.network or runner is None:
        res = RegisterResult(hyps[0].affine, 0, time.perf_counter() - t0, 0, stages, path="coarse")
        return _polish(vis, other, res, None, cfg, t0)
    scored = 0
    classical: List[np.ndarray] = []  # SIFT + MAGSAC's affine, when the dense path computed it
    from_best: Optional[Refinement] = None  # the dense path's polish from the best hypothesis, when it ran
    for start, a0 in _dense_starts(vis, other, hyps[0].affine, cfg, stages):
        if start == "sift":
            classical.append(a0)
        # SIFT + MAGSAC is itself an estimate independent of template matching; ECC is not run from it (on the
        # pairs SIFT rescues ECC's optimum is the one that was off)
        dense, n, r = _dense(vis, other, a0, runner, cfg, stages, t0, ecc=start == "coarse")
        if start == "coarse":
            from_best = r
        scored += n
        if dense is not None:
            dense.pairs_scored, dense.start = scored, start
            return dense
    reasons: List[str] = []
    for k, h in enumerate(hyps[: cfg.hypotheses]):
        est, n, why = _network_round(vis, other, h.affine, runner, cfg, stages)
        scored += n
        if est is not None:
            res = RegisterResult(est.affine, est.count, time.perf_counter() - t0, scored, stages, k)
            # the hypothesis the round started from and SIFT's affine: starts of ECC apart from the estimate (ECC
            # from the best hypothesis already ran on the dense path, when there was one)
            if not cfg.consensus:
                return _polish(vis, other, res, runner, cfg, t0)
            if k == 0 and from_best is not None:
                done = [from_best.ecc] if from_best.ecc is not None else []
                return _polish(vis, other, res, runner, cfg, t0, classical, done)
            return _polish(vis, other, res, runner, cfg, t0, [h.affine] + classical)
        reasons.append(why)
    raise RegistrationFailed(f"no coarse hypothesis verified by the network ({'; '.join(reasons)})")
