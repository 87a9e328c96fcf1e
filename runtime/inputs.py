"""What `rrl-edge run`, `parity` and `bench` read: a patch file, a patch build, or a folder of image pairs.

- a ``.npy`` patch file (published format: uint8 (N, 2, 64, 64), [:, 0] VIS), labels beside it optional;
- a patch build folder (``rrl-edge data build`` output, with its manifest): one set per category;
- a folder of registered image pairs (VIS-NIR or RoadScene layout), cut as in training (needs the
  ``train`` extra: OpenCV, Pillow) and cached.
The first two need only numpy, so a device can be handed patches cut on a workstation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from rrl_edge.errors import DataError, InputError
from rrl_edge.paths import special_file_kind
from rrl_edge.contracts import check_pairs


@dataclass
class InputSet:
    """Pairs of one category; labels (1 = same place) when the data has them."""

    name: str
    patches: np.ndarray
    labels: Optional[np.ndarray]

    def __len__(self) -> int:
        return int(self.patches.shape[0])


def _load_file(path: Path, labels: Optional[Path]) -> InputSet:
    from rrl_edge.data.patchfile import load_patch_file

    if path.suffix.lower() != ".npy":
        raise InputError(f"{path}: expected a .npy patch file (N, 2, 64, 64), a patch build or an image-pair folder")
    try:
        ps = load_patch_file(path, labels)
        return InputSet(ps.name, ps.patches, ps.labels)
    except DataError as exc:
        if labels is not None or "no labels file" not in str(exc):
            raise
    from rrl_edge.data.patchfile import check_npy_size

    check_npy_size(path, "patch")  # the header's claim against the file's size, before any allocation
    try:  # no labels beside it: score the pairs, report no FPR95
        patches = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npy patch file ({exc})") from None
    check_pairs(patches, str(path))
    return InputSet(path.stem, patches, None)


def load_inputs(
    data: Union[str, Path], split: str = "test", labels: Optional[Union[str, Path]] = None, progress: bool = True
) -> Dict[str, InputSet]:
    """Named pair sets from ``data`` (see the module doc); ``split`` picks from a build or image folder."""
    path = Path(data)
    if not path.exists():
        raise InputError(f"{path}: data not found")
    if path.is_file():
        one = _load_file(path, Path(labels) if labels else None)
        return {one.name: one}
    if not path.is_dir():
        raise InputError(f"{path}: {special_file_kind(path)}, expected a .npy patch file, a patch build or an "
                         "image-pair folder")
    if not any(path.iterdir()):
        raise InputError(f"{path}: data folder is empty")
    if (path / "manifest.json").is_file():
        from rrl_edge.data.store import load_split

        sets = load_split(path, split)
    else:
        try:
            from rrl_edge.patch_sources import load_sets
        except ImportError as exc:
            raise InputError(f"{path}: cutting patches from image pairs needs the train extra "
                             f"(pip install 'rrl-edge[train]'): {exc}") from exc
        sets, _ = load_sets(path, split, progress=progress)
    if not sets:
        raise InputError(f"{path}: the {split!r} split has no patch pairs")
    return {name: InputSet(name, ps.patches, ps.labels) for name, ps in sets.items()}
