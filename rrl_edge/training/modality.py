"""Modality randomization: change how the two spectra of a pair relate, keep their geometry.

A network trained on two camera pairs learns each camera's appearance (its intensity mapping, its optics, its
noise) as much as the structure both spectra share, and then fails on a camera it has not seen. These
families redraw that appearance per patch, so the only thing left to learn from is where the structure is:

- ``curve``: a random monotone intensity curve (8 knots): another sensor's response;
- ``remap``: a random non-monotone curve (5 knots): intensity order flips, as between VIS and LWIR
  (a hot road is bright where the visible one is dark);
- ``invert``: 1 - x, the extreme of the above;
- ``field``: smooth gain and offset fields (vignetting, uneven heating, sky gradients);
- ``thermal``: what uncooled thermal cores add: lower resolution, blur, halos around strong edges,
  fixed-pattern column noise and temporal noise;
- ``jpeg``: JPEG compression at quality 20-90 (what many camera streams carry).

Each family acts on each patch (each spectrum of each pair, independently) with probability ``prob``, after the
paper's augmentation (rrl_edge.training.augment). Nothing moves a pixel: a positive stays a positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from rrl_edge.errors import InputError

FAMILIES = ("curve", "remap", "invert", "field", "thermal", "jpeg")
CURVE_KNOTS = 8
REMAP_KNOTS = 5
FIELD_GRID = 4  # control points per side of the gain / offset fields
JPEG_QUALITY = (20, 90)


@dataclass(frozen=True)
class ModalityConfig:
    families: Tuple[str, ...] = FAMILIES
    prob: float = 0.5  # per family, per patch


def parse_families(text: str) -> Tuple[str, ...]:
    """``--modality`` text: 'all', or family names separated by commas; '' or 'none' for none."""
    text = text.strip().lower()
    if text in ("", "none"):
        return ()
    if text == "all":
        return FAMILIES
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise InputError(f"--modality {text!r}: unknown famil{'y' if len(unknown) == 1 else 'ies'} "
                         f"{', '.join(unknown)} (choose from {', '.join(FAMILIES)}, or all)")
    return names


def _piecewise(x: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Each patch of x (n, 1, H, W) in [0, 1] through its own piecewise-linear curve lut (n, K)."""
    k = lut.shape[1]
    t = x.flatten(1) * (k - 1)
    i = t.floor().clamp(0, k - 2).long()
    f = t - i
    return (torch.gather(lut, 1, i) * (1 - f) + torch.gather(lut, 1, i + 1) * f).view_as(x)


def _curve(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    steps = torch.rand(x.shape[0], CURVE_KNOTS - 1, generator=g) + 0.05
    lut = torch.cat([torch.zeros(x.shape[0], 1), steps.cumsum(1)], 1)
    return _piecewise(x, lut / lut[:, -1:])


def _remap(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    lut = torch.rand(x.shape[0], REMAP_KNOTS, generator=g)
    low, high = lut.min(1, keepdim=True).values, lut.max(1, keepdim=True).values
    return _piecewise(x, (lut - low) / (high - low).clamp_min(0.2))


def _invert(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return 1.0 - x


def _smooth(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A smooth random field of x's shape: a FIELD_GRID x FIELD_GRID normal grid, bicubically upsampled."""
    grid = torch.randn(x.shape[0], 1, FIELD_GRID, FIELD_GRID, generator=g)
    return F.interpolate(grid, size=x.shape[-2:], mode="bicubic", align_corners=True)


def _field(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    gain = torch.exp(0.3 * _smooth(x, g))
    return x * gain + 0.1 * _smooth(x, g)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (n, 1, H, W) with reflected borders."""
    radius = max(1, int(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype) / sigma) ** 2)
    taps = taps / taps.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1))
    return F.conv2d(x, taps.view(1, 1, -1, 1))


def _thermal(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, width = x.shape[0], x.shape[-1]
    low = F.interpolate(F.avg_pool2d(x, 2), size=x.shape[-2:], mode="bilinear", align_corners=False)
    coarse = torch.rand(n, 1, 1, 1, generator=g)  # how much of the resolution is lost
    x = x + coarse * (low - x)
    halo = 0.8 * torch.rand(n, 1, 1, 1, generator=g)  # unsharp rims around strong edges
    x = x + halo * (x - _gaussian(x, 4.0))
    columns = 0.03 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(n, 1, 1, width, generator=g)
    noise = 0.03 * torch.rand(n, 1, 1, 1, generator=g) * torch.randn(x.shape, generator=g)
    return x + columns + noise


def _jpeg(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    import cv2

    quality = torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (x.shape[0],), generator=g).tolist()
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8)[:, 0].numpy()
    out = np.empty_like(pixels)
    for i, (patch, q) in enumerate(zip(pixels, quality)):
        ok, data = cv2.imencode(".jpg", patch, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
        out[i] = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if ok else patch
    return torch.from_numpy(out).to(x.dtype).unsqueeze(1) / 255.0


# In the order they act: illumination, sensor response, optics and sensor noise, codec.
_APPLY: Dict[str, Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = {
    "field": _field, "curve": _curve, "remap": _remap, "invert": _invert, "thermal": _thermal, "jpeg": _jpeg,
}


def randomize_modality(x: torch.Tensor, g: torch.Generator, cfg: ModalityConfig) -> torch.Tensor:
    """x: float (B, 2, H, W) in [0, 1] -> the same shape, each patch's appearance redrawn by ``cfg``."""
    b, c, h, w = x.shape
    patches = x.reshape(b * c, 1, h, w)
    for name, apply in _APPLY.items():
        if name not in cfg.families:
            continue
        chosen = torch.rand(b * c, generator=g) < cfg.prob
        if bool(chosen.any()):
            patches = patches.clone()
            patches[chosen] = apply(patches[chosen], g).clamp(0.0, 1.0)
    return patches.reshape(b, c, h, w)
