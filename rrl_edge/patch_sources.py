"""Turn what a user points at (a folder of image pairs or a patch file) into named patch sets."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from rrl_edge.data.build import PatchConfig, detect_layout, ensure_dataset, load_split, read_manifest
from rrl_edge.data.patchfile import PatchSet, load_patch_file
from rrl_edge.errors import DataError

VALIDATION_FRACTION = 0.05  # of a published patch file's pairs, when no --val-data is given


def load_sets(
    data: Path,
    split: str,
    config: PatchConfig = PatchConfig(),
    labels: Optional[Path] = None,
    progress: bool = True,
) -> Tuple[Dict[str, PatchSet], Dict[str, object]]:
    """Patch sets of one split keyed by category, and where they came from.

    A folder of registered image pairs (VIS-NIR or RoadScene) is cut into patches once and cached; a
    .npy patch file in the published format is used as it is, whatever the split.
    """
    data = Path(data)
    if data.is_file():
        ps = load_patch_file(data, labels)
        return {ps.name: ps}, {"source": str(data), "layout": "patch-file",
                               "protocol": {"source": "patch-file", "description": "pairs as given in the patch file"}}
    layout = detect_layout(data)
    build_dir = ensure_dataset(data, config, progress=progress)
    sets = load_split(build_dir, split)
    if not sets:
        why = " (--test-fraction 1 puts every pair in the test split)" if (
            split != "test" and config.roadscene_test_fraction >= 1.0) else ""
        raise DataError(f"{data}: the {split!r} split has no patches{why} (build in {build_dir})")
    protocol = read_manifest(build_dir).get("protocol", {}).get(split)
    return sets, {"source": str(data.resolve()), "layout": layout, "build_dir": str(build_dir), "protocol": protocol}


def concat(sets: Dict[str, PatchSet], name: str) -> PatchSet:
    """All categories of a split as one set (training does not care about categories)."""
    parts = list(sets.values())
    if len(parts) == 1:
        return PatchSet(name, parts[0].patches, parts[0].labels)
    return PatchSet(name, np.concatenate([p.patches for p in parts]), np.concatenate([p.labels for p in parts]))


def split_off_validation(ps: PatchSet, seed: int) -> Tuple[PatchSet, PatchSet]:
    """A seeded, label-balanced hold-out of a patch file that comes without a validation file."""
    rng = np.random.default_rng(seed)
    val_idx = []
    for label in (0, 1):
        idx = np.flatnonzero(ps.labels == label)
        val_idx.append(rng.choice(idx, size=max(1, int(len(idx) * VALIDATION_FRACTION)), replace=False))
    mask = np.zeros(len(ps), dtype=bool)
    mask[np.concatenate(val_idx)] = True
    return (
        PatchSet(ps.name + "-train", ps.patches[~mask], ps.labels[~mask]),
        PatchSet(ps.name + "-val", ps.patches[mask], ps.labels[mask]),
    )


def _source_name(info: Dict[str, object]) -> str:
    return Path(str(info["source"])).name or str(info["source"])


def joint_name(parts: Sequence[Tuple[PatchSet, PatchSet, Dict[str, object]]]) -> str:
    """The training sources as people read them: 'vis-nir', or 'vis-nir + roadscene' for a joint run."""
    return " + ".join(_source_name(info) for _, _, info in parts)


def merge_training(
    parts: Sequence[Tuple[PatchSet, PatchSet, Dict[str, object]]],
) -> Tuple[PatchSet, Dict[str, PatchSet], Dict[str, object]]:
    """One training set, the validation sets by source, and the run's data record, from one or more --data.

    Validation stays per source so that a joint model is chosen on the mean of each camera pair's FPR95, not
    on a pool where the larger set (or the easier spectrum) decides.
    """
    if not parts:
        raise DataError("training needs at least one --data")
    val_sets: Dict[str, PatchSet] = {}
    for _, val, info in parts:
        name = _source_name(info)
        while name in val_sets:
            name += "'"
        val_sets[name] = PatchSet(name, val.patches, val.labels)
    if len(parts) == 1:
        return parts[0][0], val_sets, dict(parts[0][2])
    train = concat({f"{i}": t for i, (t, _, _) in enumerate(parts)}, "train")
    infos = [dict(info) for _, _, info in parts]
    info: Dict[str, object] = {
        "source": " + ".join(str(i["source"]) for i in infos), "layout": infos[0]["layout"],
        "layouts": [i["layout"] for i in infos], "sources": infos,
        "train_pairs_per_source": {n: len(t) for n, (t, _, _) in zip(val_sets, parts)},
    }
    return train, val_sets, info
