"""The proof at export: exported models score real test pairs like the PyTorch model they came from.

FP32 ONNX must match PyTorch to 1e-4 on every pair. An INT8 model must keep FPR95 (per category and the
mean over categories) within a budget of percentage points, and make the same match / no-match decision
at score 0.5 on at least 99% of the pairs. The comparison itself is `rrl-edge parity`'s
(rrl_edge.runtime.parity), so the export proof and the device check measure the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping

import numpy as np

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.runtime.parity import THRESHOLD, compare

FP32_TOLERANCE = 1e-4
MIN_FP32_PAIRS = 1000
MIN_AGREEMENT = 0.99


def proof_sets(sets: Mapping[str, PatchSet], per_category: int, seed: int = 0) -> Dict[str, PatchSet]:
    """Up to ``per_category`` pairs of each category, half matching and half not, seeded; 0 keeps them all."""
    if per_category <= 0:
        return dict(sets)
    rng = np.random.default_rng(seed)
    out: Dict[str, PatchSet] = {}
    for name in sorted(sets):
        ps = sets[name]
        keep: List[np.ndarray] = []
        for label in (0, 1):
            idx = np.flatnonzero(ps.labels == label)
            keep.append(rng.choice(idx, size=min(len(idx), per_category // 2), replace=False))
        chosen = np.sort(np.concatenate(keep))
        out[name] = PatchSet(name, np.ascontiguousarray(ps.patches[chosen]), ps.labels[chosen])
    return out


@dataclass
class Fp32Proof:
    pairs: int
    max_abs_diff: float

    @property
    def passed(self) -> bool:
        return self.pairs >= MIN_FP32_PAIRS and self.max_abs_diff <= FP32_TOLERANCE

    def to_dict(self) -> Dict[str, object]:
        return {"pairs": self.pairs, "max_abs_diff": self.max_abs_diff, "tolerance": FP32_TOLERANCE, "passed": self.passed}


def fp32_proof(reference: Mapping[str, np.ndarray], exported: Mapping[str, np.ndarray]) -> Fp32Proof:
    diffs = [float(np.max(np.abs(reference[c] - exported[c]))) for c in reference]
    return Fp32Proof(pairs=int(sum(len(v) for v in reference.values())), max_abs_diff=max(diffs))


def int8_parity(
    labels: Mapping[str, np.ndarray],
    reference: Mapping[str, np.ndarray],
    quantized: Mapping[str, np.ndarray],
    budget: float,
) -> Dict[str, object]:
    """The `rrl-edge parity` comparison (rrl_edge.runtime.parity.compare) in the export report's terms, plus
    the export's own rule: decisions must agree on at least 99% of the pairs."""
    result = compare(labels, reference, quantized, budget)
    categories: Dict[str, Dict[str, float]] = {}
    for name, c in result["categories"].items():
        categories[name] = {
            "pairs": c["pairs"],
            "fpr95_pytorch": c["fpr95_reference"],
            "fpr95_int8": c["fpr95"],
            "delta": c["delta"],
            "agreement": c["agreement"],
            "max_abs_diff": c["max_abs_diff"],
            "distinct_scores": int(len(np.unique(quantized[name]))),
        }
    return {
        "categories": categories,
        "mean": {"fpr95_pytorch": result["mean_fpr95_reference"], "fpr95_int8": result["mean_fpr95"],
                 "delta": result["mean_delta"]},
        "pairs": result["pairs"],
        "agreement": result["agreement"],
        "worst_abs_delta": result["worst_abs_delta"],
        "budget": budget,
        "passed": bool(result["within_budget"] and result["agreement"] >= MIN_AGREEMENT),
    }


def format_parity(results: Mapping[str, Mapping[str, object]]) -> str:
    """One table: PyTorch FPR95, then for each INT8 model its FPR95, the difference and the agreement."""
    models = list(results)
    first = results[models[0]]["categories"]
    assert isinstance(first, dict)
    head = f"{'category':<12} {'pairs':>6} {'PyTorch':>8}"
    for m in models:
        head += f" | {m[:16]:>16} {'delta':>6} {'agree%':>7}"
    lines = [f"FPR95 (%) on real test pairs; agreement = same decision at score {THRESHOLD}", head, "-" * len(head)]
    for cat in first:
        row = f"{cat:<12} {first[cat]['pairs']:>6} {first[cat]['fpr95_pytorch']:>8.2f}"
        for m in models:
            c = results[m]["categories"][cat]  # type: ignore[index]
            row += f" | {c['fpr95_int8']:>16.2f} {c['delta']:>+6.2f} {100 * c['agreement']:>7.2f}"
        lines.append(row)
    lines.append("-" * len(head))
    mean0 = results[models[0]]["mean"]
    total = sum(int(c["pairs"]) for c in first.values())
    row = f"{'mean':<12} {total:>6} {mean0['fpr95_pytorch']:>8.2f}"  # type: ignore[index]
    for m in models:
        r = results[m]
        row += f" | {r['mean']['fpr95_int8']:>16.2f} {r['mean']['delta']:>+6.2f} {100 * r['agreement']:>7.2f}"  # type: ignore[index,operator]
    lines.append(row)
    for m in models:
        r = results[m]
        verdict = "within" if r["passed"] else "OVER"
        lines.append(f"{m}: worst |delta| {r['worst_abs_delta']:.2f} points, {verdict} the budget of {r['budget']} "
                     f"points and {100 * MIN_AGREEMENT:.0f}% agreement")
    return "\n".join(lines)
