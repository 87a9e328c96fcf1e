"""The proof at export: exported models score real test pairs like the PyTorch model they came from.

FP32 ONNX must match PyTorch to 1e-4 on every pair. An INT8 model must pass `rrl-edge parity`'s rule
(rrl_edge.runtime.parity.failures: the mean FPR95 within the budget, no category beyond it beyond its
bootstrap interval, logit RMS and TPR at the operating point close to PyTorch's, 99% of decisions the same),
so the export proof, CI's parity check and the device check measure the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping

import numpy as np

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.fpr95_table import ProtocolInfo
from rrl_edge.runtime.parity import THRESHOLD, compare, format_markdown

FP32_TOLERANCE = 1e-4
MIN_FP32_PAIRS = 1000
# the test pairs of the proof: eval's default cut, or the strongest-first cut (rrl_edge.data.build.STRONGEST_CUT)
PROOF_CUTS = ("default", "strongest")


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
    protocol: ProtocolInfo = None,
) -> Dict[str, Any]:
    """`rrl-edge parity`'s comparison and pass rule (rrl_edge.runtime.parity.compare), plus each category's
    count of distinct INT8 scores (tied scores would flatten the ROC). ``protocol`` goes into its FPR95Tables."""
    result = compare(labels, reference, quantized, budget, protocol)
    for name, c in result["categories"].items():
        c["distinct_scores"] = int(len(np.unique(quantized[name])))
    return result


def format_parity(results: Mapping[str, Mapping[str, Any]], data: str = "the proof pairs") -> str:
    """The export's proof as `rrl-edge parity` prints it: PyTorch is the reference, each INT8 model a candidate."""
    report = {"reference": "PyTorch", "reference_backend": "torch", "reference_precision": "fp32", "data": data,
              "threshold": THRESHOLD,
              "candidates": {name: {**r, "backend": "onnxruntime", "precision": "int8"} for name, r in results.items()}}
    return format_markdown(report)
