"""FPR95 per category and the mean: the evaluation `rrl-edge eval` prints and writes as JSON."""

from __future__ import annotations

from typing import Callable, Dict, Mapping

import numpy as np

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.metrics import fpr95

Scorer = Callable[[PatchSet], np.ndarray]


def evaluate_sets(sets: Mapping[str, PatchSet], scorer: Scorer) -> Dict[str, object]:
    """{"categories": {name: {"fpr95", "pairs"}}, "mean_fpr95"}; the mean is over categories."""
    categories: Dict[str, Dict[str, float]] = {}
    exact: Dict[str, float] = {}
    for name, ps in sets.items():
        exact[name] = fpr95(ps.labels, scorer(ps))
        categories[name] = {"fpr95": round(exact[name], 4), "pairs": int(len(ps))}
    mean = float(np.mean(list(exact.values())))  # of the unrounded values
    return {"categories": categories, "mean_fpr95": round(mean, 4)}


def format_table(results: Dict[str, Dict[str, object]]) -> str:
    """A plain-text table, one column of FPR95 per method (e.g. "RRL-Net", "SIFT")."""
    methods = list(results)
    first = results[methods[0]]["categories"]
    assert isinstance(first, dict)
    header = f"{'category':<12} {'pairs':>7} " + " ".join(f"{m + ' FPR95':>15}" for m in methods)
    lines = [header, "-" * len(header)]
    for name in first:
        row = f"{name:<12} {first[name]['pairs']:>7} "
        row += " ".join(f"{results[m]['categories'][name]['fpr95']:>15.2f}" for m in methods)  # type: ignore[index]
        lines.append(row)
    lines.append("-" * len(header))
    total = sum(int(c["pairs"]) for c in first.values())
    lines.append(f"{'mean':<12} {total:>7} " + " ".join(f"{results[m]['mean_fpr95']:>15.2f}" for m in methods))
    return "\n".join(lines)
