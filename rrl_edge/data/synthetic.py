"""Synthetic cross-spectral pairs from single visible images: another spectrum's look, exactly the same geometry.

A network trained on two camera pairs learns those cameras. More scenes with more kinds of "other spectrum"
need no registration if the other image is made from the visible one (the idea of MINIMA, arXiv 2412.19412,
which renders modalities from RGB with generative models). This generator is cheap, fixed and seeded:

1. **spectral response**: a random linear mix of R, G and B (weights may be negative): a band's sensitivity
   (NIR makes vegetation bright, a blue-heavy mix darkens it);
2. **materials**: k-means colour classes (4-12) each get a random level, blurred a little and blended in:
   in thermal images a surface's brightness follows its material and temperature, not its texture;
3. **sensor curve**: a random tone curve, monotone or not (a hot road is bright where the visible one is dark);
4. **thermal optics** (half of the images): lower resolution, blur and halos around strong edges.

Nothing moves a pixel, so every keypoint's window is a true match. ``write_synthetic_pairs`` writes a ``pairs``
layout folder (``vis/NAME`` + ``other/NAME``) that ``rrl-edge data build`` and ``rrl-edge train --data`` read like
a user's own registered camera pair, with ``SYNTHETIC.json`` naming the generator and every source image.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from rrl_edge.atomic import check_replaceable_folder, install_folder
from rrl_edge.data.images import IMAGE_EXTENSIONS, read_rgb
from rrl_edge.data.layouts import LAYOUTS, PAIRS_OTHER_DIR, PAIRS_VIS_DIR
from rrl_edge.errors import DataError
from rrl_edge.paths import sweep_stale

GENERATOR_VERSION = 1
SYNTHETIC_MANIFEST = "SYNTHETIC.json"
SYNTHETIC_KIND = "an rrl-edge synthetic folder"
KMEANS_WIDTH = 160  # colour classes are found on a copy this wide (cheap), then assigned at full size


@dataclass(frozen=True)
class SynthConfig:
    """The generator's ranges; each image draws its own values from them."""

    materials: Tuple[int, int] = (4, 12)  # k-means colour classes
    material_weight: Tuple[float, float] = (0.2, 0.8)  # how much of the result is material level, not mixed band
    material_blur_px: Tuple[float, float] = (0.5, 2.5)
    curve_knots: int = 6
    monotone_prob: float = 0.5
    thermal_prob: float = 0.5
    thermal_downscale: Tuple[float, float] = (1.5, 4.0)
    halo_prob: float = 0.5


def _normalize(x: np.ndarray) -> np.ndarray:
    """To [0, 1] by the 1st and 99th percentiles (a band's exposure), clipped."""
    lo, hi = np.percentile(x, (1.0, 99.0))
    return np.clip((x - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0).astype(np.float32)


def _materials(x: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """A random level per k-means colour class, at full size, lightly blurred."""
    h, w = x.shape[:2]
    k = int(rng.integers(cfg.materials[0], cfg.materials[1] + 1))
    scale = min(1.0, KMEANS_WIDTH / w)
    small = cv2.resize(x, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    pixels = small.reshape(-1, 3).astype(np.float32)
    k = min(k, len(pixels))
    cv2.setRNGSeed(int(rng.integers(2**31 - 1)))  # k-means++ seeding draws from OpenCV's own generator
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1e-3)
    _, _, centers = cv2.kmeans(pixels, k, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    best = np.full((h, w), np.inf, np.float32)
    labels = np.zeros((h, w), np.int64)
    for i, c in enumerate(centers):  # one class at a time: memory of two images, not k
        d = ((x - c) ** 2).sum(-1)
        closer = d < best
        best[closer], labels[closer] = d[closer], i
    levels = rng.uniform(0.0, 1.0, k).astype(np.float32)
    region = levels[labels]
    return cv2.GaussianBlur(region, (0, 0), float(rng.uniform(*cfg.material_blur_px)))


def _curve(x: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    ys = rng.uniform(0.0, 1.0, cfg.curve_knots)
    if rng.random() < cfg.monotone_prob:
        ys = np.sort(ys) if rng.random() < 0.5 else np.sort(ys)[::-1]
    return np.interp(x, np.linspace(0.0, 1.0, cfg.curve_knots), ys).astype(np.float32)


def _thermal_optics(x: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Lower resolution (bilinear down, cubic up), and sometimes a halo: an unsharp mask with a wide kernel."""
    h, w = x.shape
    f = float(rng.uniform(*cfg.thermal_downscale))
    small = cv2.resize(x, (max(8, round(w / f)), max(8, round(h / f))), interpolation=cv2.INTER_AREA)
    x = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    if rng.random() < cfg.halo_prob:
        wide = cv2.GaussianBlur(x, (0, 0), float(rng.uniform(3.0, 8.0)))
        x = x + float(rng.uniform(0.3, 1.0)) * (x - wide)
    return x


def synthesize(rgb: np.ndarray, rng: np.random.Generator, cfg: SynthConfig = SynthConfig()) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> uint8 (H, W) image of a made-up spectrum, pixel-aligned with the input."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise DataError(f"synthesize: expected uint8 (H, W, 3) RGB, got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.float32) / 255.0
    band = _normalize(x @ rng.normal(0.0, 1.0, 3).astype(np.float32))
    a = float(rng.uniform(*cfg.material_weight))
    out = (1.0 - a) * band + a * _materials(x, rng, cfg)
    out = _curve(_normalize(out), rng, cfg)
    if rng.random() < cfg.thermal_prob:
        out = _thermal_optics(out, rng, cfg)
    return np.round(_normalize(out) * 255.0).astype(np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """The grayscale the builder reads from an RGB file (PIL's ITU-R 601-2 luma), so VIS patches look as usual."""
    return np.asarray(Image.fromarray(rgb, "RGB").convert("L"), dtype=np.uint8)


def vis_images(source: Path) -> Tuple[List[Path], str]:
    """The visible images to render from, and where they came from.

    A dataset folder (any layout rrl-edge reads) gives the VIS images of its *training* split only, so validation
    and test scenes never reach training through a synthetic twin; any other folder gives every image in it.
    """
    if not source.exists():
        raise DataError(f"{source}: folder not found")
    if not source.is_dir():
        raise DataError(f"{source}: not a folder")
    if any(lay.detect(source) for lay in LAYOUTS.values()):
        from rrl_edge.data.build import PatchConfig, ensure_dataset

        manifest = json.loads((ensure_dataset(source, PatchConfig(), progress=False) / "manifest.json").read_text())
        root = Path(manifest["sources"]["data_dir"])
        paths = [root / p["vis"] for p in manifest["sources"]["pairs"] if p.get("split") == "train"]
        return paths, f"training split of {source}"
    paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))
    if not paths:
        raise DataError(f"{source}: no images ({', '.join(IMAGE_EXTENSIONS)}) and not a dataset folder")
    return paths, f"every image in {source}"


def write_synthetic_pairs(
    sources: Sequence[Path], out: Path, copies: int = 1, seed: int = 0, cfg: SynthConfig = SynthConfig(),
    progress: bool = True, origin: Optional[str] = None,
) -> Dict[str, Any]:
    """Render ``copies`` synthetic partners of each source image into a ``pairs`` folder at ``out``; returns its
    manifest. Written into a temporary sibling and renamed, so ``out`` is whole or untouched."""
    if copies < 1:
        raise DataError(f"copies={copies}: need at least 1")
    out = out.expanduser().absolute()
    check_replaceable_folder(out, SYNTHETIC_MANIFEST, SYNTHETIC_KIND)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(out.parent, [f".{out.name}.tmp-*", f".{out.name}.old-*"])  # left by a killed run
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    (tmp / PAIRS_VIS_DIR).mkdir(parents=True)
    (tmp / PAIRS_OTHER_DIR).mkdir()
    records = []
    try:
        jobs = [(p, c) for p in sources for c in range(copies)]
        for path, c in tqdm(jobs, desc="synthetic pairs", unit="pair", disable=not progress):
            rgb = read_rgb(path)
            name = f"{len(records):05d}_{path.stem}_{c}.png"
            rng = np.random.default_rng([seed, zlib.crc32(str(path.name).encode()), c])
            cv2.imwrite(str(tmp / PAIRS_VIS_DIR / name), to_gray(rgb))
            cv2.imwrite(str(tmp / PAIRS_OTHER_DIR / name), synthesize(rgb, rng, cfg))
            records.append({"name": name, "source": str(path), "copy": c})
        text = json.dumps({"generator_version": GENERATOR_VERSION, "seed": seed, "copies": copies,
                           "config": asdict(cfg), "origin": origin or "", "pairs": records}, indent=1)
        (tmp / SYNTHETIC_MANIFEST).write_text(text)
        manifest: Dict[str, Any] = json.loads(text)  # what a reader of the file gets (lists, not tuples)
        install_folder(tmp, out, SYNTHETIC_MANIFEST, SYNTHETIC_KIND)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest
