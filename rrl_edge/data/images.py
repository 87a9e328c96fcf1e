"""Finding, reading, validating and unwarping the image pairs of the two real datasets.

Every failure is a DataError that names the file or folder, because a silently skipped pair would
change the dataset without anyone noticing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Set, Tuple

import cv2
import numpy as np
from PIL import Image, ImageOps

from rrl_edge.errors import DataError
from rrl_edge.limits import MAX_PIXELS

VISNIR_CATEGORIES = ("country", "field", "forest", "indoor", "mountain", "oldbuilding", "street", "urban", "water")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")

# The unwarped NIR next to the border of the warped content is a blend of content and black fill, plus
# JPEG ringing of the warped file's black border: 4 px of erosion drop that fringe.
VALID_ERODE_PX = 4


@dataclass(frozen=True)
class ImagePair:
    """One VIS image and its other-spectrum partner (NIR or LWIR), before reading."""

    category: str  # "country", ..., or "roadscene"
    pair_id: str  # "0001" or "FLIR_00006"
    vis_path: Path
    other_path: Path
    warp_path: Optional[Path] = None  # 2x3 matrix that brings the other image back onto the VIS grid

    @property
    def key(self) -> str:
        return f"{self.category}/{self.pair_id}"


@dataclass
class LoadedPair:
    """A pair on a common pixel grid: ``other`` is on the VIS grid, ``valid`` marks trustworthy pixels."""

    pair: ImagePair
    vis: np.ndarray  # uint8 (H, W) grayscale
    other: np.ndarray  # uint8 (H, W) grayscale, on the VIS grid
    valid: np.ndarray  # bool (H, W): pixels that hold real content of both images
    unwarped: bool


# 8-bit modes PIL turns into grayscale faithfully; 16-bit and float images would be clipped to white by convert("L").
EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV")


def check_image_header(path: Path, im: "Image.Image") -> None:
    """Refuse an image too large to hold (> MAX_PIXELS) or not 8-bit, from its header alone."""
    w, h = im.size
    if w * h > MAX_PIXELS:
        raise DataError(f"{path}: image is {w}x{h} ({w * h / 1e6:.0f} MP), more than the {MAX_PIXELS / 1e6:.0f} MP "
                        "limit; downscale it first")
    if im.mode not in EIGHT_BIT_MODES:
        raise DataError(f"{path}: image mode {im.mode} is not 8-bit (16-bit or float pixels would be clipped to "
                        "white); convert it to 8-bit first")


def read_gray(path: Path) -> np.ndarray:
    """Read any image as uint8 grayscale (the NIR jpgs of the warped folders are 3-channel)."""
    return _read(path, "L")


def read_rgb(path: Path) -> np.ndarray:
    """Read any image as uint8 (H, W, 3) RGB (a grayscale image gives three equal channels)."""
    return _read(path, "RGB")


EXIF_ORIENTATION = 0x0112


def _upright(path: Path, im: "Image.Image") -> "Image.Image":
    """The picture as viewers (and OpenCV's imread) show it: a camera that stores rotated pixels and an EXIF
    orientation tag would otherwise be registered rotated or mirrored. Said once per file on stderr, because
    every coordinate (keypoints, affines, warps) is then in the upright frame."""
    orientation = im.getexif().get(EXIF_ORIENTATION, 1)
    if orientation in (None, 1):
        return im
    if path not in _NOTED:
        _NOTED.add(path)
        print(f"rrl-edge: note: {path}: EXIF orientation {orientation} applied (the picture as viewers show it; "
              "coordinates refer to it)", file=sys.stderr)
    return ImageOps.exif_transpose(im)


_NOTED: Set[Path] = set()


def _read(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            check_image_header(path, im)  # size and mode from the header, before decoding
            im.load()  # decode now: a truncated file fails here, not later
            converted = _upright(path, im).convert(mode)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None
    arr = np.asarray(converted, dtype=np.uint8)
    if arr.ndim != (2 if mode == "L" else 3) or min(arr.shape[:2]) < 1:
        raise DataError(f"{path}: image has shape {arr.shape}, expected a 2-D picture")
    return arr


def read_warp(path: Path) -> np.ndarray:
    """Read and check the 2x3 affine matrix of a warped pair."""
    from rrl_edge.data.patchfile import check_npy_size

    check_npy_size(path, "warp matrix")
    try:
        m = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy warp matrix ({e})") from None
    if not isinstance(m, np.ndarray) or m.shape != (2, 3) or not np.issubdtype(m.dtype, np.number):
        raise DataError(f"{path}: warp matrix has shape {getattr(m, 'shape', None)}, expected a numeric 2x3")
    m = m.astype(np.float64)
    if not np.isfinite(m).all():
        raise DataError(f"{path}: warp matrix has non-finite entries")
    if np.abs(m[:, 2]).max() > MAX_WARP_SHIFT or np.abs(m[:, :2]).max() > MAX_WARP_SCALE:
        raise DataError(f"{path}: warp matrix has entries too large for an image warp (largest "
                        f"{np.abs(m).max():.3g}; at most {MAX_WARP_SCALE:g} in the 2x2 part and {MAX_WARP_SHIFT:g} px "
                        "of shift)")
    if abs(np.linalg.det(m[:, :2])) < 1e-6:
        raise DataError(f"{path}: warp matrix is singular")
    return m


# A ground-truth warp maps one image onto another of a similar size: scale factors beyond 100 or shifts beyond a
# million pixels are corrupt files (1e300 overflowed every corner error to inf and read as a registration miss).
MAX_WARP_SCALE = 100.0
MAX_WARP_SHIFT = 1e6


def unwarp(other: np.ndarray, matrix: np.ndarray, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Map ``other`` onto a ``size`` = (width, height) grid with PIL's AFFINE transform, bilinear (the
    dataset's own convention: output pixel (x, y) samples input at M @ (x, y, 1)); returns (image, valid
    mask). The mask is an all-255 image sent through the same transform, kept where it stays 255, then
    eroded by VALID_ERODE_PX."""
    coeffs = tuple(float(v) for v in matrix.ravel())
    img = Image.fromarray(other).transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    full = Image.fromarray(np.full(other.shape, 255, np.uint8))
    cover = np.asarray(full.transform(size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR))
    k = 2 * VALID_ERODE_PX + 1
    valid = cv2.erode((cover == 255).astype(np.uint8), np.ones((k, k), np.uint8), borderValue=0)
    return np.asarray(img, dtype=np.uint8), valid.astype(bool)


def load_pair(pair: ImagePair) -> LoadedPair:
    """Read both images and bring them onto the VIS grid (unwarp if the pair has a matrix)."""
    vis = read_gray(pair.vis_path)
    other = read_gray(pair.other_path)
    if pair.warp_path is not None:
        m = read_warp(pair.warp_path)
        other, valid = unwarp(other, m, (vis.shape[1], vis.shape[0]))
        if not valid.any():
            raise DataError(f"{pair.warp_path}: unwarped {pair.other_path.name} does not overlap {pair.vis_path.name}")
        return LoadedPair(pair, vis, other, valid, unwarped=True)
    if vis.shape != other.shape:
        raise DataError(
            f"image pair of different sizes: {pair.vis_path} is {vis.shape[1]}x{vis.shape[0]}, "
            f"{pair.other_path} is {other.shape[1]}x{other.shape[0]}"
        )
    return LoadedPair(pair, vis, other, np.ones(vis.shape, bool), unwarped=False)


def _require_dir(folder: Path) -> None:
    if not folder.exists():
        raise DataError(f"{folder}: folder not found")
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")


def list_visnir_category(folder: Path) -> List[ImagePair]:
    """Pairs ``NNNN_rgb.jpg`` + ``NNNN_nir.jpg`` (+ ``NNNN_nir.npy`` in the warped categories), sorted.

    A category is warped if any of its pairs has a matrix; then every pair must have one, since
    an unwarped pair among warped ones would give misaligned positives."""
    _require_dir(folder)
    rgbs = sorted(p for p in folder.iterdir() if p.name.endswith("_rgb.jpg"))
    if not rgbs:
        raise DataError(f"{folder}: no image pairs (no *_rgb.jpg files)")
    pairs = []
    for rgb in rgbs:
        pid = rgb.name[: -len("_rgb.jpg")]
        nir = folder / f"{pid}_nir.jpg"
        if not nir.is_file():
            raise DataError(f"{rgb}: its NIR partner {nir.name} is missing")
        npy = folder / f"{pid}_nir.npy"
        pairs.append(ImagePair(folder.name, pid, rgb, nir, npy if npy.is_file() else None))
    warped = [p for p in pairs if p.warp_path is not None]
    if warped and len(warped) != len(pairs):
        missing = next(p for p in pairs if p.warp_path is None)
        raise DataError(f"{missing.other_path}: warp matrix {missing.pair_id}_nir.npy missing in a warped category")
    return pairs


def list_roadscene(folder: Path) -> List[ImagePair]:
    """Pairs ``visible/NAME`` + ``infrared/NAME``, sorted by name; an unpartnered file is an error."""
    vis_dir, ir_dir = folder / "visible", folder / "infrared"
    _require_dir(vis_dir)
    _require_dir(ir_dir)

    def images(d: Path) -> List[str]:
        return sorted(p.name for p in d.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))

    vis_names, ir_names = images(vis_dir), images(ir_dir)
    if not vis_names:
        raise DataError(f"{vis_dir}: no images")
    ir_set = set(ir_names)
    for name in vis_names:
        if name not in ir_set:
            raise DataError(f"{vis_dir / name}: no infrared partner {ir_dir / name}")
    extra = sorted(set(ir_names) - set(vis_names))
    if extra:
        raise DataError(f"{ir_dir / extra[0]}: no visible partner {vis_dir / extra[0]}")
    return [ImagePair("roadscene", os.path.splitext(n)[0], vis_dir / n, ir_dir / n) for n in vis_names]
