"""Training augmentation as in the paper, done on whole batches in torch (cheap next to the network).

Flips and 90-degree rotations are applied jointly to both patches of a pair (they keep a positive
positive); photometric changes and small affine jitter are drawn independently per spectrum, since
the two sensors really do differ in gain, contrast and small misregistration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip_prob: float = 0.5
    rot90: bool = True
    brightness: float = 0.1  # additive, fraction of full scale
    contrast: float = 0.2  # multiplicative around the patch mean
    gamma: float = 0.2  # log-uniform gamma in [1/(1+g), 1+g]
    noise_std: float = 0.01
    max_rotation_deg: float = 3.0
    max_scale: float = 0.03
    max_shift_px: float = 1.0


def _joint(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Same flip / rot90 for both spectra of a pair: x is (B, 2, H, W)."""
    b = x.shape[0]
    flip = torch.rand(b, generator=g) < cfg.flip_prob
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if cfg.rot90:
        k = torch.randint(0, 4, (b,), generator=g)
        out = x.clone()
        for turns in (1, 2, 3):
            sel = k == turns
            if sel.any():
                out[sel] = torch.rot90(x[sel], turns, dims=(-2, -1))
        x = out
    return x


def _photometric(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Independent gain, contrast, gamma and noise per patch (per spectrum)."""
    shape = (x.shape[0], x.shape[1], 1, 1)
    gamma = torch.exp((torch.rand(shape, generator=g) * 2 - 1) * math.log1p(cfg.gamma))
    x = x.clamp_min(1e-6) ** gamma
    mean = x.mean(dim=(-2, -1), keepdim=True)
    contrast = 1 + (torch.rand(shape, generator=g) * 2 - 1) * cfg.contrast
    brightness = (torch.rand(shape, generator=g) * 2 - 1) * cfg.brightness
    x = (x - mean) * contrast + mean + brightness
    if cfg.noise_std > 0:
        x = x + torch.randn(x.shape, generator=g) * cfg.noise_std
    return x.clamp_(0.0, 1.0)


def _geometric(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig) -> torch.Tensor:
    """Small independent rotation, scale and shift of each patch, with border reflection."""
    b, c, h, w = x.shape
    n = b * c
    angle = (torch.rand(n, generator=g) * 2 - 1) * math.radians(cfg.max_rotation_deg)
    scale = 1 + (torch.rand(n, generator=g) * 2 - 1) * cfg.max_scale
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * cfg.max_shift_px * 2 / w
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, h, w), align_corners=False)
    out = F.grid_sample(x.reshape(n, 1, h, w), grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out.reshape(b, c, h, w)


def augment_batch(x: torch.Tensor, g: torch.Generator, cfg: AugmentConfig = AugmentConfig()) -> torch.Tensor:
    """x: float (B, 2, 64, 64) in [0, 1] -> an augmented batch of the same shape."""
    x = _joint(x, g, cfg)
    x = _geometric(x, g, cfg)
    return _photometric(x, g, cfg)
