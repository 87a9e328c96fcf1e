"""Patch files in the published format of the cross-spectral patch benchmarks.

One ``.npy`` holds ``X``: uint8 ``(N, 2, 64, 64)`` (``[:, 0]`` VIS, ``[:, 1]`` the other spectrum), a
second ``.npy`` holds the labels ``(N,)`` with 1 = same place, 0 = different. Keeping exactly that
format lets the published datasets and the ones built here go through the same loader.
"""

from __future__ import annotations

import glob
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from rrl_edge.contracts import PATCH_SIZE
from rrl_edge.errors import DataError
from rrl_edge.paths import pid_tag, sweep_stale

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class PatchSet:
    """Patch pairs of one category / split."""

    name: str  # category / split name, e.g. "field"
    patches: np.ndarray  # uint8 (N, 2, 64, 64); [:, 0] is VIS, [:, 1] the other spectrum
    labels: np.ndarray  # uint8 (N,), 1 = same place, 0 = different

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def validate_patches(patches: np.ndarray, labels: np.ndarray, source: str) -> None:
    """Raise DataError naming ``source`` unless patches are uint8 (N, 2, 64, 64), labels (N,) of 0/1, N > 0."""
    if not isinstance(patches, np.ndarray):
        raise DataError(f"{source}: patches are a {type(patches).__name__}, expected a numpy array")
    if not isinstance(labels, np.ndarray):
        raise DataError(f"{source}: labels are a {type(labels).__name__}, expected a numpy array")
    if patches.ndim != 4 or patches.shape[1:] != (2, PATCH_SIZE, PATCH_SIZE):
        raise DataError(
            f"{source}: patches have shape {patches.shape}, expected (N, 2, {PATCH_SIZE}, {PATCH_SIZE})"
        )
    if patches.dtype != np.uint8:
        raise DataError(f"{source}: patches have dtype {patches.dtype}, expected uint8")
    if labels.ndim != 1:
        raise DataError(f"{source}: labels have shape {labels.shape}, expected (N,)")
    if patches.shape[0] != labels.shape[0]:
        raise DataError(f"{source}: {patches.shape[0]} patch pairs but {labels.shape[0]} labels")
    if patches.shape[0] == 0:
        raise DataError(f"{source}: no patch pairs (N == 0)")
    if not (labels.dtype == np.bool_ or np.issubdtype(labels.dtype, np.integer)
            or np.issubdtype(labels.dtype, np.floating)):  # complex 1+0j would pass the 0/1 test below
        raise DataError(f"{source}: labels have dtype {labels.dtype}, expected integers 0/1")
    bad = ~np.isin(labels, (0, 1))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{source}: labels must be 0 or 1; {int(bad.sum())} are not (first at index {first}: {labels[first]!r})"
        )


SHARED_LABEL_NAMES = ("labels.npy", "y.npy", "Y.npy")  # names that do not say which patch file they label


def _label_candidates(patches_path: Path) -> List[Path]:
    """Sibling names that the published datasets use for the labels of ``patches_path``."""
    parent, name, stem = patches_path.parent, patches_path.name, patches_path.stem
    cands = [parent / f"{stem}_labels.npy"]
    for word, repl in (("patches", "labels"), ("Patches", "Labels"), ("PATCHES", "LABELS")):
        if word in name:
            cands.append(parent / name.replace(word, repl))
    if stem[:1] in ("x", "X") and (len(stem) == 1 or not stem[1].isalnum()):
        cands += [parent / f"y{stem[1:]}.npy", parent / f"Y{stem[1:]}.npy"]
    cands += [parent / n for n in SHARED_LABEL_NAMES]
    out: List[Path] = []
    for c in cands:
        if c != patches_path and c not in out:
            out.append(c)
    return out


def data_inputs(data: Optional[PathLike], labels: Optional[PathLike] = None) -> List[Path]:
    """What reading ``data`` reads, for the output guard (rrl_edge.paths): the file or folder itself, and for a
    patch file every labels file beside it that the loader could pick."""
    out: List[Path] = []
    if data:
        out.append(Path(data))
        if Path(data).is_file() and Path(data).suffix.lower() == ".npy":
            out += [c for c in _label_candidates(Path(data)) if c.is_file()]
    if labels:
        out.append(Path(labels))
    return out


def check_npy_size(path: Path, what: str = "array") -> None:
    """Read only the .npy header and refuse a file shorter than the array it claims (a header can claim
    petabytes: numpy would try to allocate them before noticing) or an object array (a pickle)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable .npy {what} file ({' '.join(str(e).split())[:200]})") from None
    if dtype.hasobject:
        raise DataError(f"{path}: holds Python objects (dtype {dtype}), expected a numeric .npy {what} file")
    count = 1
    for n in shape:
        count *= int(n)
    need = offset + count * dtype.itemsize
    have = path.stat().st_size
    if have < need:
        raise DataError(f"{path}: its header claims shape {tuple(shape)} {dtype} ({need:,} bytes) but the file has "
                        f"{have:,} bytes (truncated or corrupt)")


def check_both_classes(labels: np.ndarray, source: str) -> None:
    """FPR95 needs matching and non-matching pairs: say so, naming the data, before anything is scored."""
    labels = np.asarray(labels)
    if labels.size and labels.min() == labels.max():
        raise DataError(f"{source}: all {labels.size} pairs are labelled {int(labels.flat[0])}; FPR95 and "
                        "training need both matching (1) and non-matching (0) pairs")


def _load_npy(path: Path, what: str, mmap: bool) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    with open(path, "rb") as fh:
        is_zip = fh.read(2) == b"PK"  # an .npz archive: np.load opens it lazily, refused below
    if not is_zip:
        check_npy_size(path, what)
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy {what} file ({e})") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive opens as NpzFile
        raise DataError(f"{path}: is an .npz archive, expected a single-array .npy {what} file")
    return arr


def load_patch_file(
    patches_path: PathLike,
    labels_path: Optional[PathLike] = None,
    name: Optional[str] = None,
    mmap: bool = False,
) -> PatchSet:
    """Load a patch file and its labels; ``labels_path`` defaults to the first existing sibling among
    ``<stem>_labels.npy``, the name with "patches" replaced by "labels", ``y*.npy`` for ``X*.npy``,
    ``labels.npy``/``y.npy``. ``mmap`` maps the patches read-only instead of reading them (big train sets)."""
    ppath = Path(patches_path)
    if labels_path is None:
        cands = _label_candidates(ppath)
        found = [c for c in cands if c.is_file()]
        if not found:
            tried = ", ".join(c.name for c in cands)
            raise DataError(f"{ppath}: no labels file found next to it (tried {tried}); pass labels_path")
        lpath = found[0]
        if lpath.name in SHARED_LABEL_NAMES:  # may belong to another patch file in the folder: say which was read
            print(f"rrl-edge: note: {ppath}: labels read from {lpath.name} beside it (pass --labels to choose "
                  "another file)", file=sys.stderr)
    else:
        lpath = Path(labels_path)
    patches = _load_npy(ppath, "patches", mmap)
    labels = _load_npy(lpath, "labels", False)
    if labels.ndim == 2 and labels.shape[1] == 1:  # some published label files are (N, 1)
        labels = labels[:, 0]
    validate_patches(patches, labels, f"{ppath} (labels {lpath.name})")
    return PatchSet(name=name if name is not None else ppath.stem, patches=patches, labels=labels.astype(np.uint8))


def default_file_mode() -> int:
    """0o666 minus the umask: what open() would give; mkstemp's 0600 would hide builds from other users."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_targets(paths: List[Path], arrays: List[np.ndarray]) -> None:
    """Write every array to a temp file in its target's folder, then os.replace them all.

    Nothing is left behind on failure: a half-written temp file is removed, and no target is replaced
    until every temp file is complete and fsynced."""
    temps: List[str] = []
    try:
        for path, arr in zip(paths, arrays):
            path.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(path.parent, [f".{glob.escape(path.name)}.*.tmp"])  # temps of a killed writer
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{pid_tag()}.", suffix=".tmp", dir=path.parent)
            temps.append(tmp)
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
        mode = default_file_mode()
        for path, tmp in zip(paths, temps):
            os.chmod(tmp, mode)
            os.replace(tmp, path)
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def save_patch_set(ps: PatchSet, patches_path: PathLike, labels_path: PathLike) -> None:
    """Validate and write ``ps`` in the published format; atomic (temp file in the same folder, then
    os.replace) so a crash never leaves a truncated patch file that a later run would trust."""
    ppath, lpath = Path(patches_path), Path(labels_path)
    if ppath.resolve() == lpath.resolve():
        raise DataError(f"{ppath}: patches and labels would be written to the same file")
    validate_patches(ps.patches, ps.labels, f"patch set {ps.name!r} for {ppath}")
    _atomic_targets([ppath, lpath], [ps.patches, ps.labels.astype(np.uint8)])
