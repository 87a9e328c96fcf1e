"""Reading a finished patch build (manifest + patch files): numpy only, so a device can read one.

The builder (``build``) writes these folders; it needs OpenCV and Pillow, reading them does not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from rrl_edge.data.patchfile import PatchSet, PathLike, load_patch_file
from rrl_edge.errors import DataError

DATA_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


def read_manifest(out_dir: PathLike) -> Dict[str, Any]:
    """The manifest of a complete build; DataError if there is none or it is unreadable."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{out_dir}: not a complete patch build (no {MANIFEST})")
    try:
        with open(path) as fh:
            m = json.load(fh)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(m, dict) or m.get("format_version") != DATA_FORMAT_VERSION or "counts" not in m:
        raise DataError(f"{path}: not a format-{DATA_FORMAT_VERSION} rrl-edge patch manifest")
    return m


def load_split(out_dir: PathLike, split: str, mmap: bool = False) -> Dict[str, PatchSet]:
    """Every category of one split of a build, keyed by category name (``mmap`` maps patches read-only)."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: expected one of {SPLITS}")
    out = Path(out_dir)
    m = read_manifest(out)
    sets: Dict[str, PatchSet] = {}
    for cat, info in sorted(m["counts"].get(split, {}).items()):
        ps = load_patch_file(out / info["patches_file"], out / info["labels_file"], name=cat, mmap=mmap)
        if len(ps) != info["pairs"]:
            raise DataError(f"{out / info['patches_file']}: {len(ps)} pairs, the manifest says {info['pairs']}")
        sets[cat] = ps
    return sets
