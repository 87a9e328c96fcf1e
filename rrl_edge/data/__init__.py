"""Real cross-spectral data: image pairs -> aligned, balanced 64x64 patch pairs in the published format.

Modules: ``patchfile`` (the .npy patch format), ``images`` (finding/reading/unwarping pairs),
``alignment`` (shift search and the keep/correct/drop decision), ``patches`` (keypoints, cutting,
negatives), ``build`` (splits, manifest, cache).
"""

from rrl_edge.data.build import (
    DATA_FORMAT_VERSION,
    PatchConfig,
    build_dataset,
    default_data_root,
    detect_layout,
    ensure_dataset,
    load_split,
)
from rrl_edge.data.patchfile import PatchSet, load_patch_file, save_patch_set, validate_patches

__all__ = [
    "DATA_FORMAT_VERSION",
    "PatchConfig",
    "PatchSet",
    "build_dataset",
    "default_data_root",
    "detect_layout",
    "ensure_dataset",
    "load_patch_file",
    "load_split",
    "save_patch_set",
    "validate_patches",
]
