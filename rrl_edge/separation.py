"""How well a model tells matches from non-matches on someone's own pairs, and whether to fine-tune first.

A user's first question on a new camera pair is not the FPR95 alone but what to do next. On registered pairs the
matches are the windows at the same position in both images and the non-matches are windows shifted by 64 px
or more (the builder's negatives), so their score distributions are known without any labelling. The advice
follows the measured fine-tuning curve (docs/training.md, fine-tuning for your own cameras): the shipped models score 0.9-3.7 % on the cameras
they were trained on, and a model at 14 % on a new camera came down to 4.9 % after fine-tuning on 20 pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

import numpy as np

from rrl_edge.metrics import fpr95

DEPLOY_FPR95 = 5.0  # at or below: as good as fine-tuning on 20 pairs of a new camera made it
FINETUNE_FPR95 = 15.0  # above: worse than the VIS-NIR-only model on thermal images (14.2)
FINETUNE_COMMAND = "rrl-edge train --data YOUR_PAIRS --init-from shipped"


@dataclass(frozen=True)
class Separation:
    pairs: int
    matches_median: float  # score of the median matching pair
    nonmatches_median: float
    nonmatches_above_median_match: float  # % of non-matches scoring above the median match
    fpr95: float
    auc: float

    @property
    def verdict(self) -> str:
        if self.fpr95 <= DEPLOY_FPR95:
            return f"separates well (FPR95 <= {DEPLOY_FPR95:g} %): deploy it as it is"
        if self.fpr95 <= FINETUNE_FPR95:
            return ("separates partly: fine-tuning on about 20 of your registered pairs is expected to help "
                    f"({FINETUNE_COMMAND})")
        return f"does not separate your pairs: fine-tune before deploying ({FINETUNE_COMMAND})"

    def summary(self) -> str:
        return (f"matches (same position) median score {self.matches_median:.3f}, non-matches (windows >= 64 px "
                f"apart) median {self.nonmatches_median:.3f}; {self.nonmatches_above_median_match:.1f} % of "
                f"non-matches score above the median match; AUC {self.auc:.4f}, FPR95 {self.fpr95:.2f} % "
                f"over {self.pairs} pairs\nverdict: {self.verdict}")

    def to_json(self) -> Dict[str, Any]:
        return {**asdict(self), "verdict": self.verdict}


def separation(labels: np.ndarray, scores: np.ndarray, source: str = "separation") -> Separation:
    """The two score distributions of ``labels`` (1 = match) summarized; FPR95 checks the inputs."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    rate = fpr95(labels, scores, source)
    pos, neg = scores[labels == 1], scores[labels == 0]
    med = float(np.median(pos))
    return Separation(
        pairs=int(labels.size), matches_median=round(med, 4), nonmatches_median=round(float(np.median(neg)), 4),
        nonmatches_above_median_match=round(float((neg > med).mean() * 100), 2), fpr95=round(rate, 4),
        auc=round(float(roc_auc_score(labels, scores)), 5),
    )
