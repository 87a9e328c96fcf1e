"""How sure a registration is: the network's score at the answer against its score beside it.

An affine can come out of MAGSAC or ECC for two images that have nothing to do with each other (noise, unrelated
scenes), and an engine that scores every pair 1 would verify anything. What neither can fake is contrast: where
the answer is right, VIS patches match the other image's patches at the mapped places and do not match them a
patch-width away. So the check scores the same VIS keypoints against the other image under the answer and under
the answer shifted by ``SHIFT_PX`` in four directions, and calls the registration sure when the mean score at the
answer beats the best shifted one by at least ``MIN_CONTRAST``. The threshold was chosen on validation pairs that
are not the test pairs (benchmarks/register_confidence.py; docs/registration-settings.md has the measurement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

from rrl_edge.registration import geometry as geo
from rrl_edge.registration.refine import network_support
from rrl_edge.runtime.runner import Runner

SHIFT_PX = 48.0  # beside the answer: three quarters of a 64-px patch away, where a true match has ended
KEYPOINTS = 24  # VIS keypoints scored under the answer and the four shifted affines (5 x 24 network pairs)
# Mean score at the answer minus the best shifted mean. Validation (benchmarks/register_confidence.py, seed 7: 20
# VIS-NIR country and 20 RoadScene training pairs under random affines, 20 unrelated and 6 noise pairs): right
# answers 0.527-0.972, unrelated scenes and noise -0.052-0.081; 0.30 is the middle of that gap. Re-run after the
# pipeline's stages changed, at 48 keypoints: right answers 0.524-0.981, the one noise pair answered 0.025 (every
# unrelated pair and 5 of 6 noise pairs now fail outright), so 0.30 stays inside the gap; 96 keypoints gave the
# same gap (0.527 against -0.006) at twice the network pairs. At 24 keypoints: right answers 0.473-0.957, the one
# noise pair answered 0.016, every unrelated pair failing outright: 0.30 stays inside the gap.
MIN_CONTRAST = 0.30


@dataclass
class Confidence:
    score: float  # the network's mean score at the answer
    beside: float  # the best of its mean scores at the four shifted affines
    keypoints: int  # VIS keypoints scored (0: no overlap left to score)

    @property
    def pairs(self) -> int:
        """Network pairs it scored: each keypoint under the answer and the four shifted affines."""
        return 5 * self.keypoints

    @property
    def contrast(self) -> float:
        return self.score - self.beside

    def doubt(self, min_contrast: float = MIN_CONTRAST) -> Optional[str]:
        """Why the registration is not to be trusted, or None when it is."""
        if self.keypoints == 0:
            return "no VIS keypoints inside the overlap to check the answer with"
        if self.contrast < min_contrast:
            return (f"the network does not single out the answer (mean score {self.score:.2f} there, "
                    f"{self.beside:.2f} {SHIFT_PX:g} px beside it; a sure answer leads by {min_contrast:g})")
        return None

    def to_json(self) -> Dict[str, object]:
        return {"score": round(self.score, 4), "beside": round(self.beside, 4), "contrast": round(self.contrast, 4),
                "keypoints": self.keypoints, "sure": self.doubt() is None}

    def line(self, inliers: int) -> str:
        """The one line a person reads beside the overlay."""
        verdict = "sure" if self.doubt() is None else "UNSURE"
        return (f"confidence: {verdict} (network score {self.score:.2f} at the answer, {self.beside:.2f} "
                f"{SHIFT_PX:g} px beside it, contrast {self.contrast:+.2f}, {inliers} inliers)")


def measure(vis: np.ndarray, other: np.ndarray, affine: np.ndarray, runner: Runner,
            count: int = KEYPOINTS) -> Confidence:
    """The network's mean score under ``affine`` (VIS -> other) and under it shifted by SHIFT_PX each way."""
    d = SHIFT_PX
    affines = [affine] + [geo.compose(affine, geo.translation(dx, dy)) for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d))]
    means, pairs = network_support(vis, other, affines, runner, count)
    kps = pairs // len(affines)
    if kps == 0:
        return Confidence(0.0, 0.0, 0)
    return Confidence(float(means[0]), float(np.max(means[1:])), kps)
