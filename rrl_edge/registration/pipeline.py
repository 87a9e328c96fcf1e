"""The registration pipeline: coarse hypotheses, then network-verified matches in a shrinking window, each
round followed by MAGSAC, then a dense ECC polish that the network must not score worse (``refine``). Stages can
be switched off to measure what each buys (``register-eval --coarse-only``, ``--no-refine``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from rrl_edge.registration.coarse import CoarseConfig, coarse_align
from rrl_edge.registration.estimate import Estimate, RegistrationFailed, magsac_affine, plausible
from rrl_edge.registration.matching import Window, match
from rrl_edge.registration.refine import RefineConfig, refine
from rrl_edge.runtime.runner import Runner


@dataclass(frozen=True)
class RegisterConfig:
    coarse: CoarseConfig = CoarseConfig()
    # round 1 finds the match within the coarse error; round 2 refines to sub-pixel around round 1's affine
    rounds: Tuple[Window, ...] = (Window(radius=8, step=2, keypoints=64), Window(radius=2, step=1, keypoints=160))
    thresholds: Tuple[float, ...] = (4.0, 1.5)  # MAGSAC inlier threshold (px) per round
    min_inliers: int = 8
    min_inlier_ratio: float = 0.3  # of the keypoints whose best score passed, in the first round
    hypotheses: int = 3  # coarse hypotheses tried, best first, until one verifies
    network: bool = True  # False: stop after the coarse stage (ablation)
    refine: Optional[RefineConfig] = RefineConfig()  # None: no ECC polish (ablation)


@dataclass
class RegisterResult:
    affine: np.ndarray
    inliers: int
    seconds: float
    pairs_scored: int
    stages: Dict[str, float] = field(default_factory=dict)  # seconds per stage
    hypothesis: int = 0
    refined: Optional[bool] = None  # ECC polish kept (True), refused (False) or not tried (None)
    refine_note: str = ""  # why a polish was refused
    unrefined: Optional[np.ndarray] = None  # the estimate before the polish (register-eval's ablation for free)

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
        }


def _refine(vis: np.ndarray, other: np.ndarray, a0: np.ndarray, runner: Runner, cfg: RegisterConfig,
            stages: Dict[str, float]) -> Tuple[Optional[Estimate], int, str]:
    """Network rounds from ``a0``; (estimate or None, pairs scored, why it failed)."""
    a, est, scored = a0, None, 0
    for i, (win, thr) in enumerate(zip(cfg.rounds, cfg.thresholds)):
        t = time.perf_counter()
        m = match(vis, other, a, win, runner)
        stages[f"round{i + 1}"] = stages.get(f"round{i + 1}", 0.0) + time.perf_counter() - t
        scored += m.pairs_scored
        new = magsac_affine(m.vis, m.other, thr, cfg.min_inliers)
        if new is None:
            return est if i > 0 else None, scored, f"round {i + 1}: {len(m.vis)} network matches, no consistent affine"
        if i == 0 and new.count < cfg.min_inlier_ratio * len(m.vis):
            return None, scored, f"round 1: only {new.count} of {len(m.vis)} network matches agree"
        if not plausible(new.affine, cfg.coarse.max_rotation, cfg.coarse.min_scale, cfg.coarse.max_scale):
            return est if i > 0 else None, scored, f"round {i + 1}: affine outside the searched range"
        a, est = new.affine, new
    return est, scored, ""


def _polish(vis: np.ndarray, other: np.ndarray, res: RegisterResult, runner: Optional[Runner],
            cfg: RegisterConfig, t0: float) -> RegisterResult:
    """The ECC polish of a finished estimate (kept only when its guards pass), timed as the stage "refine"."""
    if cfg.refine is None:
        return res
    t = time.perf_counter()
    res.unrefined = res.affine
    r = refine(vis, other, res.affine, runner, cfg.refine)
    res.stages["refine"] = time.perf_counter() - t
    res.affine, res.refined, res.refine_note = r.affine, r.accepted, r.reason
    res.pairs_scored += r.pairs_scored
    res.seconds = time.perf_counter() - t0
    return res


def register_images(vis: np.ndarray, other: np.ndarray, runner: Optional[Runner], cfg: RegisterConfig = RegisterConfig()) -> RegisterResult:
    """Affine VIS -> other of two grayscale images; raises RegistrationFailed with the reason."""
    t0 = time.perf_counter()
    stages: Dict[str, float] = {}
    hyps = coarse_align(vis, other, cfg.coarse)
    stages["coarse"] = time.perf_counter() - t0
    if not cfg.network or runner is None:
        return _polish(vis, other, RegisterResult(hyps[0].affine, 0, time.perf_counter() - t0, 0, stages), None, cfg, t0)
    scored = 0
    reasons: List[str] = []
    for k, h in enumerate(hyps[: cfg.hypotheses]):
        est, n, why = _refine(vis, other, h.affine, runner, cfg, stages)
        scored += n
        if est is not None:
            res = RegisterResult(est.affine, est.count, time.perf_counter() - t0, scored, stages, k)
            return _polish(vis, other, res, runner, cfg, t0)
        reasons.append(why)
    raise RegistrationFailed(f"no coarse hypothesis verified by the network ({'; '.join(reasons)})")
