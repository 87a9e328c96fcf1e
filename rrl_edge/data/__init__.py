"""Real cross-spectral data: image pairs -> aligned, balanced 64x64 patch pairs in the published format.

Modules: ``patchfile`` (the .npy patch format), ``images`` (finding/reading/unwarping pairs),
``layouts`` (the dataset-layout registry: vis-nir, roadscene, a vis/ + other/ pairs folder),
``alignment`` (shift search and the keep/correct/drop decision), ``protocol`` (keypoint sampling and
negative rules, the choices in one place), ``patches`` (keypoints, cutting, negatives), ``build``
(splits, manifest, cache).

The names below load on first use (PEP 562): the device runtime reads patch files through
``rrl_edge.data.patchfile`` (numpy only) and must not pull in OpenCV and Pillow with the builder.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "DATA_FORMAT_VERSION": "store",
    "PatchConfig": "build",
    "build_dataset": "build",
    "default_data_root": "build",
    "detect_layout": "build",
    "ensure_dataset": "build",
    "load_split": "store",
    "PatchSet": "patchfile",
    "load_patch_file": "patchfile",
    "save_patch_set": "patchfile",
    "validate_patches": "patchfile",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rrl_edge.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rrl_edge.data.{_WHERE[name]}"), name)
