"""FPR95 per category and the mean: the evaluation `rrl-edge eval` prints and writes as JSON."""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.fpr95_table import FPR95Table, ProtocolInfo

Scorer = Callable[[PatchSet], np.ndarray]


def evaluate_sets(sets: Mapping[str, PatchSet], scorer: Scorer, protocol: ProtocolInfo = None) -> FPR95Table:
    """Every category scored by ``scorer`` and measured: the FPR95Table (rrl_edge.fpr95_table) eval prints
    (``format_tables``) and writes (``to_json``)."""
    scores = {name: scorer(ps) for name, ps in sets.items()}
    return FPR95Table.from_scores({name: ps.labels for name, ps in sets.items()}, scores, protocol)
