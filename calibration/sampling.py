"""Which patch pairs calibrate INT8: the training split only, evenly over categories and labels, seeded.

Test pairs never calibrate (the proof at export measures on them). Each (category, label) group gets
the same share of the requested count, so a category with more pairs or a split with more non-matching
pairs cannot dominate the activation ranges. The selected set is hashed as the bytes of the ``.npy`` file
it is saved to, so ``sha256sum rrl.calib.npy`` checks it.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import numpy as np

from rrl_edge.data.patchfile import PatchSet
from rrl_edge.errors import DataError, ExportError

CALIBRATION_SPLIT = "train"


@dataclass
class CalibrationSet:
    """The calibration pairs (uint8, (N, 2, 64, 64)) with their labels and where they came from."""

    pairs: np.ndarray
    labels: np.ndarray
    categories: List[str]  # per pair
    seed: int
    source: str
    counts: Dict[str, Dict[str, int]] = field(default_factory=dict)  # {category: {"0": n, "1": n}}

    def npy_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(self.pairs), allow_pickle=False)
        return buffer.getvalue()

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.npy_bytes()).hexdigest()

    def manifest(self) -> Dict[str, object]:
        return {
            "split": CALIBRATION_SPLIT,
            "source": self.source,
            "seed": self.seed,
            "pairs": int(len(self.pairs)),
            "counts": self.counts,
            "sha256": self.sha256,
        }


def load_calibration_sets(data: Path, progress: bool = False) -> Tuple[Dict[str, PatchSet], Dict[str, object]]:
    """The training split of a folder of image pairs (VIS-NIR or RoadScene layout), keyed by category."""
    from rrl_edge.data.build import STRONGEST_CUT
    from rrl_edge.patch_sources import load_sets

    data = Path(data)
    if not data.exists():
        raise ExportError(f"--calib-data {data}: folder not found")
    if not data.is_dir():
        raise ExportError(f"--calib-data {data}: not a folder (calibration reads the training split of a folder of image pairs)")
    try:
        return load_sets(data, CALIBRATION_SPLIT, STRONGEST_CUT, progress=progress)
    except DataError as exc:
        raise ExportError(f"--calib-data {data}: {exc}") from None


def select_samples(sets: Mapping[str, PatchSet], count: int, seed: int = 0, source: str = "") -> CalibrationSet:
    """``count`` pairs drawn without replacement, split as evenly as possible over (category, label)."""
    groups: List[Tuple[str, int, np.ndarray]] = []
    for name in sorted(sets):
        labels = np.asarray(sets[name].labels)
        for label in (0, 1):
            groups.append((name, label, np.flatnonzero(labels == label)))
    if count < len(groups):
        raise ExportError(
            f"--calib-samples {count}: need at least one pair per category and label ({len(groups)} groups: "
            f"{', '.join(f'{n}/{lab}' for n, lab, _ in groups)})"
        )
    share, extra = divmod(count, len(groups))
    quotas = [share + (1 if i < extra else 0) for i in range(len(groups))]
    short = [(n, lab, len(idx), q) for (n, lab, idx), q in zip(groups, quotas) if len(idx) < q]
    if short:
        detail = "; ".join(f"{n} label {lab}: {have} pairs, {q} needed" for n, lab, have, q in short)
        available = len(groups) * min(len(idx) for _, _, idx in groups)
        raise ExportError(
            f"--calib-samples {count}: fewer calibration pairs than asked ({detail}); "
            f"at most {available} can be drawn evenly from {source or 'the training split'}"
        )
    rng = np.random.default_rng(seed)
    parts: List[Tuple[str, int, np.ndarray]] = []
    counts: Dict[str, Dict[str, int]] = {}
    for (name, label, idx), quota in zip(groups, quotas):
        chosen = np.sort(rng.choice(idx, size=quota, replace=False))
        parts.append((name, label, chosen))
        counts.setdefault(name, {})[str(label)] = int(quota)
    pairs = np.concatenate([np.asarray(sets[name].patches[chosen]) for name, _, chosen in parts])
    labels = np.concatenate([np.full(len(chosen), label, dtype=np.uint8) for _, label, chosen in parts])
    categories = [name for name, _, chosen in parts for _ in range(len(chosen))]
    order = rng.permutation(len(pairs))  # every calibration batch sees every group
    return CalibrationSet(
        pairs=np.ascontiguousarray(pairs[order]),
        labels=labels[order],
        categories=[categories[i] for i in order],
        seed=seed,
        source=source,
        counts=counts,
    )
