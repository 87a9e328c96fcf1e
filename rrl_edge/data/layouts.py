"""Dataset layouts: how a folder of registered image pairs is recognised, listed and split, in one registry.

Each layout is one ``Layout`` entry: ``detect`` says whether a folder has this layout, ``plan`` lists its
pairs with their split, ``shipped`` names the packaged model for it (the joint VIS-NIR + VIS-LWIR model for all). The builder,
``detect_layout`` and ``checkpoint.shipped_for_layout`` read this table; nothing else checks layout names.
(Published patch files are not image folders; ``patch_sources`` handles them.)

- ``vis-nir``: category folders (country/, field/, ...) of ``NNNN_rgb.jpg`` + ``NNNN_nir.jpg``; train on
  country (``val_images`` of them held out: ``plan`` gives them split None, and the builder takes the first
  ones that pass the alignment check as val), test on the other eight.
- ``roadscene``: ``visible/NAME`` + ``infrared/NAME`` (VIS-LWIR).
- ``pairs``: bring your own camera pair: ``vis/NAME`` + ``other/NAME`` (any second spectrum), pixel-aligned, or
  with ``warp/STEM.npy`` for every pair (the 2x3 affine VIS pixel -> other pixel, VIS-NIR's convention; what
  ``rrl-edge register-folder`` writes for pairs from two unaligned cameras).
  RoadScene and pairs folders get a fixed split by image: a seeded permutation of the sorted names, the
  first ``test_fraction`` test, ~10 % of the rest val, the remainder train.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from rrl_edge.data.images import IMAGE_EXTENSIONS, VISNIR_CATEGORIES, ImagePair, list_roadscene, list_visnir_category
from rrl_edge.errors import DataError
from rrl_edge.paths import special_file_kind

VISNIR_TRAIN_CATEGORY = "country"
VAL_FRACTION = 0.1  # of the non-test images of a folder split by image
PAIRS_VIS_DIR, PAIRS_OTHER_DIR, PAIRS_CATEGORY = "vis", "other", "pairs"
PAIRS_WARP_DIR = "warp"  # optional: one 2x3 affine per pair, for pairs that are registered but not pixel-aligned

Plan = List[Tuple[ImagePair, Optional[str]]]  # (pair, split); None: VIS-NIR country, val or train


@dataclass(frozen=True)
class SplitSettings:
    """What a plan needs of the build's settings (``PatchConfig`` carries them)."""

    seed: int
    val_images: int
    test_fraction: float


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    detect: Callable[[Path], bool]
    plan: Callable[[Path, SplitSettings], Plan]
    shipped: str  # name of the shipped model (checkpoint.SHIPPED) for this data


# ------------------------------------------------------------------------------------------- listing


def _image_names(d: Path) -> List[str]:
    return sorted(p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def list_named_pairs(folder: Path, vis_sub: str, other_sub: str, category: str) -> List[ImagePair]:
    """``folder/vis_sub/NAME`` + ``folder/other_sub/NAME``, sorted by name; an unpartnered image is an error."""
    vis_dir, other_dir = folder / vis_sub, folder / other_sub
    for sub in (vis_dir, other_dir):
        if not sub.is_dir():
            raise DataError(f"{sub}: folder not found")
    vis_names, other_names = _image_names(vis_dir), _image_names(other_dir)
    if not vis_names:
        raise DataError(f"{vis_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    other_set, vis_set = set(other_names), set(vis_names)
    for name in vis_names:
        if name not in other_set:
            raise DataError(f"{vis_dir / name}: no partner image {other_dir / name}")
    extra = sorted(other_set - vis_set)
    if extra:
        raise DataError(f"{other_dir / extra[0]}: no partner image {vis_dir / extra[0]}")
    return [ImagePair(category, os.path.splitext(n)[0], vis_dir / n, other_dir / n) for n in vis_names]


def with_warps(folder: Path, pairs: List[ImagePair]) -> List[ImagePair]:
    """The pairs with ``folder/warp/STEM.npy`` attached when that folder exists; then every pair needs one, since
    an unwarped pair among warped ones would give misaligned positives (as in VIS-NIR's warped categories)."""
    warp_dir = folder / PAIRS_WARP_DIR
    if not warp_dir.is_dir():
        return pairs
    out = []
    for p in pairs:
        w = warp_dir / f"{p.pair_id}.npy"
        if not w.is_file():
            raise DataError(f"{w}: warp matrix missing ({p.vis_path.name} has none; with a {PAIRS_WARP_DIR}/ folder "
                            "every pair needs one)")
        out.append(replace(p, warp_path=w))
    return out


def _split_by_image(d: Path, pairs: List[ImagePair], s: SplitSettings) -> Plan:
    """The fixed seeded split by image (first test_fraction test, ~VAL_FRACTION of the rest val); a test_fraction
    of 1 makes every pair test (a folder only scored, never trained on)."""
    n = len(pairs)
    everything = s.test_fraction >= 1.0
    need, for_what = (1, "to score") if everything else (3, "for train/val/test")
    if n < need:
        raise DataError(f"{d}: {n} image pairs, need at least {need} {for_what}")
    ids = [p.pair_id for p in pairs]
    if len(set(ids)) != n:
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"{d}: two images share the name {dup!r} (different extensions); rename one")
    if everything:
        return [(p, "test") for p in pairs]
    order = np.random.default_rng(s.seed).permutation(n)
    n_test = min(max(1, round(s.test_fraction * n)), n - 2)
    n_val = min(max(1, round(VAL_FRACTION * (n - n_test))), n - n_test - 1)
    split = {}
    for rank, i in enumerate(order):
        split[pairs[i].pair_id] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    return [(p, split[p.pair_id]) for p in pairs]


# --------------------------------------------------------------------------------------------- plans


def _plan_visnir(d: Path, s: SplitSettings) -> Plan:
    """Country pairs in a seeded walk order (split None), then the test categories sorted by category, id."""
    if not (d / VISNIR_TRAIN_CATEGORY).is_dir():
        raise DataError(f"{d / VISNIR_TRAIN_CATEGORY}: folder not found (the training category)")
    country = list_visnir_category(d / VISNIR_TRAIN_CATEGORY)
    if len(country) <= s.val_images:
        raise DataError(f"{d / VISNIR_TRAIN_CATEGORY}: {len(country)} pairs, need more than val_images={s.val_images}")
    order = np.random.default_rng(s.seed).permutation(len(country))
    plan: Plan = [(country[i], None) for i in order]
    for c in VISNIR_CATEGORIES[1:]:
        if (d / c).is_dir():
            plan += [(p, "test") for p in list_visnir_category(d / c)]
    return plan


def _plan_roadscene(d: Path, s: SplitSettings) -> Plan:
    return _split_by_image(d, list_roadscene(d), s)


def _plan_pairs(d: Path, s: SplitSettings) -> Plan:
    return _split_by_image(d, with_warps(d, list_named_pairs(d, PAIRS_VIS_DIR, PAIRS_OTHER_DIR, PAIRS_CATEGORY)), s)


LAYOUTS: Dict[str, Layout] = {
    lay.name: lay
    for lay in (  # detection order: the first whose detect() holds
        Layout(
            "roadscene", "visible/ + infrared/ (RoadScene, VIS-LWIR)",
            lambda d: (d / "visible").is_dir() and (d / "infrared").is_dir(), _plan_roadscene, "joint",
        ),
        Layout(
            "pairs",
            f"{PAIRS_VIS_DIR}/ + {PAIRS_OTHER_DIR}/ (your own registered pairs, same file names; optional {PAIRS_WARP_DIR}/)",
            lambda d: (d / PAIRS_VIS_DIR).is_dir() and (d / PAIRS_OTHER_DIR).is_dir(), _plan_pairs, "joint",
        ),
        Layout(
            "vis-nir", f"category folders {', '.join(VISNIR_CATEGORIES)} (VIS-NIR)",
            lambda d: any((d / c).is_dir() for c in VISNIR_CATEGORIES), _plan_visnir, "joint",
        ),
    )
}


def get_layout(name: str) -> Layout:
    if name not in LAYOUTS:
        raise DataError(f"unknown data layout {name!r}; expected one of {tuple(LAYOUTS)}")
    return LAYOUTS[name]


def detect_layout(data_dir: "os.PathLike[str] | str") -> str:
    """The name of the first layout in ``LAYOUTS`` that ``data_dir`` has; one-line DataError otherwise."""
    d = Path(data_dir)
    if not d.exists():
        raise DataError(f"{d}: data folder not found")
    if not d.is_dir():
        raise DataError(f"{d}: {special_file_kind(d)}, expected a folder of image pairs")
    for lay in LAYOUTS.values():
        if lay.detect(d):
            return lay.name
    if not any(d.iterdir()):
        raise DataError(f"{d}: data folder is empty")
    hint = ""
    if (d / "vis-nir").is_dir() or (d / "roadscene").is_dir():
        hint = f"; it holds several datasets, pass one of them, e.g. {d / 'vis-nir'}"
    expected = " or ".join(lay.description for lay in LAYOUTS.values())
    raise DataError(f"{d}: unknown data layout: expected {expected}{hint}")
