"""Build the train / val / test patch files of a real dataset, with a manifest and a build cache.

Splits are by whole image, never by patch, so no image contributes to two splits:

- VIS-NIR (the RRL-Net protocol): train on country, test on each of the eight other categories.
  ``val_images`` country pairs are held out for validation: the country pairs are walked in a seeded
  permutation of their sorted ids and the first ``val_images`` that pass the alignment check become
  val (so a dropped pair never leaves val short).
- RoadScene and a folder of your own pairs (``vis/`` + ``other/``): a fixed split of the sorted file
  names by a seeded permutation: the first 20 % are test, ~10 % of the rest val, the remainder train.
  Dropped pairs only lower the counts, they do not move other images between splits.

Layouts (how a folder is recognised, listed and split) are entries of ``layouts.LAYOUTS``; how keypoints
and negatives are chosen (the protocol, recorded per split in the manifest) is ``protocol``.

Output folder: ``<split>_<category>_patches.npy`` / ``<split>_<category>_labels.npy`` in the published
format, and ``manifest.json`` written last; the whole folder is built under a temporary name next to
``out_dir`` and renamed at the end, so a folder with a manifest is always complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from tqdm import tqdm

from rrl_edge.atomic import check_replaceable_folder, install_folder, write_json
from rrl_edge.data import alignment as al
from rrl_edge.data import protocol as proto
from rrl_edge.data.images import ImagePair, load_pair
from rrl_edge.data.layouts import VISNIR_TRAIN_CATEGORY, SplitSettings, detect_layout, get_layout  # noqa: F401  (detect_layout: re-exported)
from rrl_edge.data.patches import DETECTORS, make_pairs
from rrl_edge.contracts import PATCH_SIZE
from rrl_edge.data.patchfile import PatchSet, save_patch_set
from rrl_edge.data.store import DATA_FORMAT_VERSION, MANIFEST, SPLITS, load_split, read_manifest  # noqa: F401  (load_split: re-exported)
from rrl_edge.errors import DataError
from rrl_edge.paths import cache_folder, sweep_stale

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class PatchConfig:
    patch_size: int = 64
    train_keypoints_per_image: int = 2000  # positives per training image (and as many negatives)
    eval_keypoints_per_image: int = 96  # positives per val/test image (and as many negatives)
    min_keypoint_distance: int = 8  # non-max suppression radius between kept keypoints (val/test)
    train_min_keypoint_distance: int = 4  # the same for training images: more places per image
    keypoint_sampling: str = proto.DEFAULT_EVAL_SAMPLING  # val/test: "uniform" or "strongest" (protocol.py)
    negatives: str = proto.DEFAULT_EVAL_NEGATIVES  # val/test: "far" or "near" ("mixed" too)
    train_keypoint_sampling: str = proto.DEFAULT_TRAIN_SAMPLING
    train_negatives: str = proto.DEFAULT_TRAIN_NEGATIVES
    detector: str = "sift"  # "sift" or "fast"
    val_images: int = 6  # VIS-NIR: country images held out (whole images) for validation
    # share of the images of a folder split by image (RoadScene, your own pairs) in the test split; 1.0: every
    # pair is test (scoring a folder the model will not be trained on)
    roadscene_test_fraction: float = 0.2
    seed: int = 0
    train_images: Optional[int] = None  # use only this many training images (a seeded draw): fine-tuning curves

    def key(self) -> Dict[str, Any]:
        """The settings as the cache key and manifest see them; an unset ``train_images`` is left out, so builds
        made before it existed keep their key."""
        d = asdict(self)
        if d["train_images"] is None:
            del d["train_images"]
        return d

    def check(self) -> None:
        """Reject settings that would give files other code cannot read."""
        if self.patch_size != PATCH_SIZE:
            raise DataError(f"PatchConfig.patch_size={self.patch_size}: the patch file format is fixed at {PATCH_SIZE}")
        if self.detector not in DETECTORS:
            raise DataError(f"PatchConfig.detector={self.detector!r}: expected one of {DETECTORS}")
        for field, kind in (("keypoint_sampling", "keypoint sampling"), ("train_keypoint_sampling", "keypoint sampling"),
                            ("negatives", "negatives"), ("train_negatives", "negatives")):
            try:
                proto.check_choice(kind, getattr(self, field))
            except ValueError as e:
                raise DataError(f"PatchConfig.{field}: {e}") from None
        if self.train_keypoints_per_image < 1 or self.eval_keypoints_per_image < 1:
            raise DataError("PatchConfig: keypoints per image must be >= 1")
        if self.val_images < 1:
            raise DataError(f"PatchConfig.val_images={self.val_images}: need at least one validation image")
        if self.train_images is not None and self.train_images < 1:
            raise DataError(f"PatchConfig.train_images={self.train_images}: need at least one training image")
        if not 0.0 < self.roadscene_test_fraction <= 1.0:
            raise DataError(f"PatchConfig.roadscene_test_fraction={self.roadscene_test_fraction}: must be in (0, 1]")

    def split_settings(self) -> SplitSettings:
        return SplitSettings(self.seed, self.val_images, self.roadscene_test_fraction)

    def protocol(self, split: str) -> Dict[str, Any]:
        """How the pairs of ``split`` are cut (recorded in the manifest and in eval's report)."""
        if split == "train":
            return proto.protocol_record(self.train_keypoint_sampling, self.train_negatives,
                                         self.train_keypoints_per_image, self.train_min_keypoint_distance,
                                         self.detector, self.seed)
        return proto.protocol_record(self.keypoint_sampling, self.negatives, self.eval_keypoints_per_image,
                                     self.min_keypoint_distance, self.detector, self.seed)


# The strongest-first cut, byte for byte as the project first cut it: the strongest 96 (val/test) and 600 (train,
# 8 px suppression) keypoints per image, far negatives. The single-dataset models were trained and selected on it.
# INT8 calibration reads its training split (calibrated on the whole-range training cut, the logit RMS error of
# INT8 rose from 0.15-0.18 to 0.31); `export --proof-cut strongest` proves on its test split, while eval, train
# and the export's proof default to the whole-range cut.
STRONGEST_CUT = PatchConfig(
    train_keypoints_per_image=600, train_min_keypoint_distance=8, keypoint_sampling="strongest",
    train_keypoint_sampling="strongest", train_negatives="far",
)


# ----------------------------------------------------------------------------------------- locating data


def default_data_root() -> Path:
    """$RRL_EDGE_DATA if set, else ../shared/data from the working directory or from the repository."""
    env = os.environ.get("RRL_EDGE_DATA")
    if env:
        p = Path(env).expanduser()
        if not p.is_dir():
            raise DataError(f"RRL_EDGE_DATA={env}: folder not found")
        return p
    cands = [Path.cwd() / ".." / "shared" / "data", Path(__file__).resolve().parents[2].parent / "shared" / "data"]
    for c in cands:
        if c.is_dir():
            return c.resolve()
    raise DataError(f"no data folder: set RRL_EDGE_DATA or provide one of {', '.join(str(c) for c in cands)}")


def default_dataset(name: str = "vis-nir") -> Path:
    """The folder every command reads when ``--data`` is not given: the shared VIS-NIR set (or ``name``)."""
    return default_data_root() / name


# ------------------------------------------------------------------------------------------ per-pair work


def _pair_rng(config: PatchConfig, pair: ImagePair) -> np.random.Generator:
    """Seeded by the seed and the pair's name (crc32), so a pair gives the same patches in any subset."""
    return np.random.default_rng([config.seed, zlib.crc32(pair.key.encode())])


def _rel(p: Optional[Path], root: Path) -> Optional[str]:
    if p is None:
        return None
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


class _PairResult:
    """Alignment record of one pair plus its patches once cut."""

    def __init__(self, pair: ImagePair, record: Dict[str, Any], loaded: Any, alignment: al.Alignment) -> None:
        self.pair, self.record, self.loaded, self.alignment = pair, record, loaded, alignment
        self.patches: Optional[np.ndarray] = None
        self.labels: Optional[np.ndarray] = None

    @property
    def usable(self) -> bool:
        return self.alignment.decision != "dropped"


def _check_pair(pair: ImagePair, root: Path) -> _PairResult:
    """Read, unwarp and run the alignment check; the pixels are kept for cutting."""
    lp = load_pair(pair)
    a = al.check_alignment(lp.vis, lp.other, lp.valid)
    rec: Dict[str, Any] = {
        "category": pair.category,
        "pair_id": pair.pair_id,
        "vis": _rel(pair.vis_path, root),
        "other": _rel(pair.other_path, root),
        "warp": _rel(pair.warp_path, root),
        "unwarp_applied": lp.unwarped,
        "size": [int(lp.vis.shape[1]), int(lp.vis.shape[0])],
    }
    rec.update(a.to_dict())
    rec["applied_shift"] = list(a.applied_shift)
    return _PairResult(pair, rec, lp, a)


def _cut_pair(res: _PairResult, split: str, config: PatchConfig) -> None:
    """Apply the shift, mask excluded tiles, cut the pairs; frees the pixels afterwards."""
    lp, a = res.loaded, res.alignment
    other, valid = lp.other, lp.valid
    dx, dy = a.applied_shift
    if (dx, dy) != (0, 0):
        other, shifted_valid = al.apply_shift(other, valid, dx, dy)
        valid = valid & shifted_valid
    if a.excluded_boxes:
        valid = valid.copy()
        for x0, y0, x1, y1 in a.excluded_boxes:
            valid[y0:y1, x0:x1] = False
    p = config.protocol(split)
    res.patches, res.labels = make_pairs(
        lp.vis, other, valid, p["keypoints_per_image"], _pair_rng(config, res.pair), config.patch_size,
        p["min_keypoint_distance"], config.detector, p["keypoint_sampling"], p["negatives"],
    )
    res.record["split"] = split
    res.record["positives"] = int(res.labels.sum())
    res.loaded = None


# -------------------------------------------------------------------------------------------------- build


def _run_pairs(d: Path, layout: str, config: PatchConfig, progress: bool) -> List[_PairResult]:
    """Check and cut every pair, one progress bar over images."""
    results: List[_PairResult] = []
    jobs = get_layout(layout).plan(d, config.split_settings())
    walks_val = any(split is None for _, split in jobs)
    limit = config.train_images
    if limit is not None:  # training images in a seeded order, so the first `limit` usable ones are a fair draw
        train_jobs = [j for j in jobs if j[1] == "train"]
        order = np.random.default_rng((config.seed, 1)).permutation(len(train_jobs))  # one order: 5 ⊂ 20 ⊂ 80
        jobs = [j for j in jobs if j[1] != "train"] + [train_jobs[i] for i in order]
    n_val = n_train = 0
    for pair, split in tqdm(jobs, desc=f"patches {d.name}", unit="img", disable=not progress):
        if limit is not None and n_train >= limit and (split == "train" or (split is None and n_val >= config.val_images)):
            continue  # enough training images: the rest are not read
        res = _check_pair(pair, d)
        if split is None:  # a country pair: val until val_images usable ones are taken
            split = "val" if (res.usable and n_val < config.val_images) else "train"
            n_val += int(res.usable and split == "val")
        n_train += int(res.usable and split == "train")
        if res.usable:
            _cut_pair(res, split, config)
        else:
            res.record["split"] = split
            res.record["positives"] = 0
            res.loaded = None
        results.append(res)
    if walks_val and n_val < config.val_images:
        raise DataError(
            f"{d / VISNIR_TRAIN_CATEGORY}: only {n_val} pairs pass the alignment check, need val_images="
            f"{config.val_images} plus training pairs"
        )
    return results


def _write_split_files(results: List[_PairResult], tmp: Path, d: Path) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """Concatenate per (split, category) in pair-id order and write the patch files; returns the counts."""
    groups: Dict[Tuple[str, str], List[_PairResult]] = {}
    for r in results:
        groups.setdefault((r.record["split"], r.pair.category), []).append(r)
    counts: Dict[str, Dict[str, Dict[str, Any]]] = {s: {} for s in SPLITS}
    for (split, cat), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r.pair.pair_id)
        used = [r for r in rs if r.labels is not None and len(r.labels)]
        no_keypoints = sum(r.labels is not None and not len(r.labels) for r in rs)
        if not used:
            raise DataError(f"{d / cat}: no usable image pairs for split {split!r} (all dropped or without keypoints)")
        ps = PatchSet(cat, np.concatenate([r.patches for r in used]), np.concatenate([r.labels for r in used]))
        for r in used:  # free per-pair copies as soon as they are concatenated
            r.patches = r.labels = None
        save_patch_set(ps, tmp / f"{split}_{cat}_patches.npy", tmp / f"{split}_{cat}_labels.npy")
        pos = int(ps.labels.sum())
        counts[split][cat] = {
            "pairs": len(ps),
            "positives": pos,
            "negatives": len(ps) - pos,
            "images": len(used),
            "images_dropped": sum(not r.usable for r in rs),
            "images_without_patches": no_keypoints,
            "images_corrected": sum(r.alignment.decision == "corrected" for r in rs),
            "patches_file": f"{split}_{cat}_patches.npy",
            "labels_file": f"{split}_{cat}_labels.npy",
        }
    return counts


def _alignment_thresholds() -> Dict[str, Any]:
    names = ("SEARCH_RADIUS", "PRE_BLUR_SIGMA", "HIGHPASS_SIGMA", "PEAK_EXCLUSION_PX", "FAR_PX", "MIN_PEAK",
             "MAX_SECOND_RATIO", "MIN_PEAK_MARGIN", "KEEP_RADIUS", "TILE_GRID", "TILE_MIN_PEAK",
             "TILE_MAX_SECOND_RATIO", "TILE_TOLERANCE_PX")
    return {n.lower(): getattr(al, n) for n in names}


BUILD_KIND = "an rrl-edge patch build"


def build_dataset(data_dir: PathLike, out_dir: PathLike, config: PatchConfig = PatchConfig(), progress: bool = True) -> dict:
    """Build every split of the dataset in ``data_dir`` into ``out_dir``; returns the manifest."""
    config.check()
    t0 = time.time()
    d = Path(data_dir).expanduser()
    layout = detect_layout(d)
    d = d.resolve()
    out = Path(out_dir).expanduser().absolute()
    check_replaceable_folder(out, MANIFEST, BUILD_KIND)  # fail before the work, not after it
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out.parent, [f".{out.name}.tmp-*", f".{out.name}.old-*"])  # left by a killed build
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        results = _run_pairs(d, layout, config, progress)
        counts = _write_split_files(results, tmp, d)
        decisions: Dict[str, Dict[str, int]] = {}
        for r in results:
            c = decisions.setdefault(r.pair.category, {"kept": 0, "corrected": 0, "dropped": 0})
            c[r.alignment.decision] += 1
        manifest = {
            "format_version": DATA_FORMAT_VERSION,
            "layout": layout,
            "build_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.time() - t0, 1),
            "seed": config.seed,
            "config": config.key(),
            "counts": counts,
            "alignment_summary": decisions,
            "alignment_thresholds": _alignment_thresholds(),
            "protocol": {split: config.protocol(split) for split in SPLITS},
            "sources": {"data_dir": str(d), "pairs": [r.record for r in results]},
        }
        write_json(manifest, tmp / MANIFEST)
        install_folder(tmp, out, MANIFEST, BUILD_KIND)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# ------------------------------------------------------------------------------------------ using a build


def _listing(d: Path) -> List[Tuple[str, int, int]]:
    """Relative names, sizes and mtimes (ns) of every file under ``d``: the cache key's view of the data, so an
    edited file (a warp matrix of the same size) makes a new build. Symlinked folders are followed once each: a
    symlink loop cannot make the walk endless."""
    out = []
    seen = set()
    for root, dirs, files in os.walk(d, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            try:
                st = p.stat()
                out.append((str(p.relative_to(d)), st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((str(p.relative_to(d)), -1, -1))
    return out


def dataset_key(data_dir: PathLike, config: PatchConfig = PatchConfig()) -> str:
    """Short hash of what determines a build: data folder, its file listing, config, format version."""
    d = Path(data_dir).expanduser().resolve()
    blob = json.dumps(
        {"dir": str(d), "files": _listing(d), "config": config.key(), "format": DATA_FORMAT_VERSION},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def ensure_dataset(
    data_dir: PathLike, config: PatchConfig = PatchConfig(), cache_root: Optional[PathLike] = None, progress: bool = True
) -> Path:
    """The build folder for (data_dir, config) under the cache, building it unless already complete."""
    layout = detect_layout(data_dir)
    if cache_root is None:
        cache_root = cache_folder("RRL_EDGE_CACHE", Path.home() / ".cache" / "rrl-edge" / "patches")
    out = Path(cache_root).expanduser() / f"{layout}-{dataset_key(data_dir, config)}"
    try:
        read_manifest(out)
        return out
    except DataError:
        pass
    build_dataset(data_dir, out, config, progress)
    return out
