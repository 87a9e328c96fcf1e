"""The patch-cutting protocol's choices, defined once: how keypoints are picked and how negatives are paired.

The CLI reads its ``--keypoint-sampling`` / ``--negatives`` choices from these dicts, the builder looks the
chosen entries up here, and the build manifest and eval's JSON record them (``protocol_record``), so a number
always says which cut it was measured on.

Why two samplings: the strongest SIFT responses are the easy places (corners, high contrast); sampling
uniformly among all keypoints also reaches the low-contrast places (fields, water, slopes) where a user's
keypoints fall too. Why near negatives: registration confuses a place with its neighbourhood, not with the far
side of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class KeypointSampling:
    name: str
    description: str


@dataclass(frozen=True)
class NegativeRule:
    """Partner keypoint at Chebyshev distance in [min_px, max_px] (max None: no upper bound).

    ``near_fraction`` mixes the two bands per keypoint (1.0: near only, 0.0: far only)."""

    name: str
    description: str
    near_fraction: float


# Chebyshev distances (px) of the two negative bands; 64 = one patch: the windows never share a pixel.
FAR_MIN_PX = 64
NEAR_MIN_PX = 64
NEAR_MAX_PX = 128

KEYPOINT_SAMPLINGS: Dict[str, KeypointSampling] = {
    s.name: s
    for s in (
        KeypointSampling(
            "uniform",
            "seeded uniform draw among all non-max-suppressed keypoints whose window is valid (whole response range)",
        ),
        KeypointSampling("strongest", "the strongest non-max-suppressed keypoints whose window is valid, first"),
    )
}

NEGATIVE_RULES: Dict[str, NegativeRule] = {
    r.name: r
    for r in (
        NegativeRule("far", f"other-spectrum patch at another keypoint, Chebyshev distance >= {FAR_MIN_PX} px", 0.0),
        NegativeRule(
            "near", f"other-spectrum patch at another keypoint {NEAR_MIN_PX}-{NEAR_MAX_PX} px away (Chebyshev)", 1.0
        ),
        NegativeRule("mixed", "half near, half far, drawn per keypoint (falls back to the other band if one is empty)", 0.5),
    )
}

# What an evaluation is measured on by default (val/test), and what training is cut with.
DEFAULT_EVAL_SAMPLING = "uniform"
DEFAULT_EVAL_NEGATIVES = "far"
DEFAULT_TRAIN_SAMPLING = "uniform"
DEFAULT_TRAIN_NEGATIVES = "mixed"


def check_choice(kind: str, value: str) -> None:
    """ValueError naming the choices; the builder turns it into a DataError."""
    table: Dict[str, Any] = {"keypoint sampling": KEYPOINT_SAMPLINGS, "negatives": NEGATIVE_RULES}[kind]
    if value not in table:
        raise ValueError(f"unknown {kind} {value!r}; expected one of {tuple(table)}")


def protocol_record(
    sampling: str, negatives: str, keypoints_per_image: int, min_keypoint_distance: int, detector: str,
    seed: Optional[int] = None,
) -> Dict[str, Any]:
    """The JSON the manifest and eval's report carry for one split."""
    rule = NEGATIVE_RULES[negatives]
    rec: Dict[str, Any] = {
        "keypoint_sampling": sampling,
        "negatives": negatives,
        "keypoints_per_image": keypoints_per_image,
        "min_keypoint_distance": min_keypoint_distance,
        "detector": detector,
        "negative_band_px": {
            "far": [FAR_MIN_PX, None],
            "near": [NEAR_MIN_PX, NEAR_MAX_PX],
            "near_fraction": rule.near_fraction,
        },
        "description": f"{KEYPOINT_SAMPLINGS[sampling].description}; negatives: {rule.description}",
    }
    if seed is not None:
        rec["seed"] = seed
    return rec
