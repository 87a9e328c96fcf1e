"""Is a pair really registered? Integer shift search on edge images, and the per-pair decision.

Cross-spectral images share edges, not intensities, so both images are compared as gradient
magnitudes: Gaussian pre-blur (sigma 0.7), Sobel magnitude, minus its local mean (Gaussian sigma 4,
computed over valid pixels only). The high-pass matters: plain gradient magnitudes have a large smooth
component (textured vs flat regions) that lifts the whole correlation surface: 0.29-0.33 everywhere in
the +-8 px window on country/0015, a 0.35 floor under the 0.63 peak of the well-registered country/0005.
After it the surface has one sharp peak (country/0005: 0.46 at zero, nothing above 0.06 more than
2 px away).

The VIS centre crop (margin = search radius) is matched against the other image with
cv2.matchTemplate(TM_CCOEFF_NORMED), giving the normalised cross-correlation for every integer shift
within +-8 px. Shift convention: (dx, dy) means VIS pixel (x, y) shows the same place as pixel
(x + dx, y + dy) of the other image; the correction resamples other'(x, y) = other(x + dx, y + dy).

Decision, thresholds chosen from the numbers on all 212 VIS-NIR and 221 RoadScene pairs:

- peak = surface maximum; second = highest 3x3 local maximum more than 2 px (Chebyshev) from the peak.
- clean peak: peak >= 0.03, peak not on the border of the search window (the true maximum may lie
  beyond), and (second <= 0.75 * peak or peak - second >= 0.10).
  Aligned pairs have peaks from 0.04 (water/0016, LWIR pairs around 0.05-0.15) to 0.95, typically
  with second/peak < 0.6; the pairs that are visibly not the same framing (country/0015, 0017, 0024:
  the NIR shot is zoomed/moved by 10+ px) have peak 0.01-0.05 and second/peak 0.84-0.93. The absolute
  margin rescues strong peaks on repetitive texture (indoor/0001: 0.74 vs 0.61), which a ratio alone
  would drop.
- no clean peak -> "dropped"; clean peak with |dx|, |dy| <= 1 -> "kept" (no shift applied: a 1 px
  peak is within the sub-pixel ambiguity of the surface); otherwise -> "corrected" by (dx, dy).

Local check: some pairs are not related by a pure translation (zoom or parallax between the two
exposures, clouds and leaves moving: on country/0035 the per-tile x shift runs from 0 to -5 px across
the image). The same search on a 3x3 grid of tiles gives local shifts; a tile whose own peak is
confident (>= 0.15, not on the window border, second <= 0.6 * peak, and every value more than 3 px
from the peak <= 0.6 * peak, which rules out ridges: a tile with edges of one orientation cannot fix the
shift along them) and differs from the applied shift by more than 2 px is excluded from keypoint
sampling, so positives stay within 2 px of the same place. The differences are real: on
oldbuilding/0010 the sphinx in the foreground sits at +2 px and the pyramid behind it at -3 px (tile
peaks 0.73-0.85, competitors under 0.3): parallax between the two exposures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

SEARCH_RADIUS = 8
PRE_BLUR_SIGMA = 0.7
HIGHPASS_SIGMA = 4.0
PEAK_EXCLUSION_PX = 2
FAR_PX = 3
MIN_PEAK = 0.03
MAX_SECOND_RATIO = 0.75
MIN_PEAK_MARGIN = 0.10
KEEP_RADIUS = 1
TILE_GRID = 3
TILE_MIN_PEAK = 0.15
TILE_MAX_SECOND_RATIO = 0.6
TILE_TOLERANCE_PX = 2


def gradient_magnitude(gray: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """High-passed gradient magnitude (float32), zero outside ``valid``; the local mean is taken over
    valid pixels only so the border of an unwarped image does not leak into the edge image."""
    f = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), PRE_BLUR_SIGMA)
    mag = cv2.magnitude(cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3))
    if valid is None:
        return mag - cv2.GaussianBlur(mag, (0, 0), HIGHPASS_SIGMA)
    w = valid.astype(np.float32)
    mean = cv2.GaussianBlur(mag * w, (0, 0), HIGHPASS_SIGMA) / np.maximum(
        cv2.GaussianBlur(w, (0, 0), HIGHPASS_SIGMA), 1e-3
    )
    return (mag - mean) * w


def shift_surface(vis_edges: np.ndarray, other_edges: np.ndarray, radius: int = SEARCH_RADIUS) -> np.ndarray:
    """NCC for every integer shift in [-radius, radius]^2: entry [radius + dy, radius + dx]."""
    h, w = vis_edges.shape
    if h <= 2 * radius + 1 or w <= 2 * radius + 1:
        raise ValueError(f"images of {w}x{h} are too small for a +-{radius} px shift search")
    template = np.ascontiguousarray(vis_edges[radius : h - radius, radius : w - radius])
    res = cv2.matchTemplate(np.ascontiguousarray(other_edges), template, cv2.TM_CCOEFF_NORMED)
    return np.nan_to_num(res, nan=0.0, posinf=0.0, neginf=0.0)


@dataclass
class Peak:
    dx: int
    dy: int
    peak: float
    second: float  # best competing local maximum, see module docstring
    far: float  # highest value more than FAR_PX from the peak: high on a ridge (edges of one orientation)
    zero: float  # correlation at zero shift
    on_border: bool


def find_peak(surface: np.ndarray) -> Peak:
    """Main peak of a shift surface and its best competitor."""
    r = (surface.shape[0] - 1) // 2
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)  # first maximum in raster order
    peak = float(surface[iy, ix])
    local_max = surface >= cv2.dilate(surface, np.ones((3, 3), np.uint8))
    e = PEAK_EXCLUSION_PX
    local_max[max(0, iy - e) : iy + e + 1, max(0, ix - e) : ix + e + 1] = False
    second = float(surface[local_max].max()) if local_max.any() else float(np.median(surface))
    far_mask = np.ones(surface.shape, bool)
    far_mask[max(0, iy - FAR_PX) : iy + FAR_PX + 1, max(0, ix - FAR_PX) : ix + FAR_PX + 1] = False
    far = float(surface[far_mask].max()) if far_mask.any() else float(np.median(surface))
    on_border = iy in (0, surface.shape[0] - 1) or ix in (0, surface.shape[1] - 1)
    return Peak(int(ix) - r, int(iy) - r, peak, second, far, float(surface[r, r]), bool(on_border))


def is_clean(p: Peak) -> Tuple[bool, str]:
    """Global clean-peak rule (thresholds in the module docstring); returns (clean, reason)."""
    if p.on_border:
        return False, f"peak at the border of the +-{SEARCH_RADIUS} px search window"
    if p.peak < MIN_PEAK:
        return False, f"peak correlation {p.peak:.3f} < {MIN_PEAK}"
    if p.second > MAX_SECOND_RATIO * p.peak and p.peak - p.second < MIN_PEAK_MARGIN:
        return False, f"ambiguous: second peak {p.second:.3f} vs {p.peak:.3f}"
    return True, "clean peak"


@dataclass
class TileCheck:
    box: Tuple[int, int, int, int]  # x0, y0, x1, y1 on the VIS grid
    dx: int
    dy: int
    peak: float
    confident: bool
    excluded: bool


@dataclass
class Alignment:
    """Outcome of the check for one pair, as recorded in the manifest."""

    decision: str  # "kept" | "corrected" | "dropped"
    dx: int  # peak position (the shift found), whatever the decision
    dy: int
    peak: float
    second: float
    zero: float
    reason: str
    tiles: List[TileCheck] = field(default_factory=list)

    @property
    def applied_shift(self) -> Tuple[int, int]:
        return (self.dx, self.dy) if self.decision == "corrected" else (0, 0)

    @property
    def excluded_boxes(self) -> List[Tuple[int, int, int, int]]:
        return [t.box for t in self.tiles if t.excluded]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        for k in ("peak", "second", "zero"):
            d[k] = round(d[k], 4)
        d["tiles"] = [
            {"box": list(t.box), "dx": t.dx, "dy": t.dy, "peak": round(t.peak, 4), "confident": t.confident,
             "excluded": t.excluded}
            for t in self.tiles
        ]
        d["tiles_excluded"] = sum(t.excluded for t in self.tiles)
        return d


def _tile_checks(vis_e: np.ndarray, oth_e: np.ndarray, valid: np.ndarray, shift: Tuple[int, int]) -> List[TileCheck]:
    """Local shift of each tile of a TILE_GRID x TILE_GRID grid, compared with the applied shift."""
    h, w = vis_e.shape
    r = SEARCH_RADIUS
    out = []
    for i in range(TILE_GRID):
        for j in range(TILE_GRID):
            y0, y1 = i * h // TILE_GRID, (i + 1) * h // TILE_GRID
            x0, x1 = j * w // TILE_GRID, (j + 1) * w // TILE_GRID
            ty0, ty1, tx0, tx1 = max(y0, r), min(y1, h - r), max(x0, r), min(x1, w - r)
            box = (x0, y0, x1, y1)
            if ty1 - ty0 < 2 * r or tx1 - tx0 < 2 * r or valid[ty0:ty1, tx0:tx1].mean() < 0.5:
                out.append(TileCheck(box, 0, 0, 0.0, False, False))
                continue
            res = cv2.matchTemplate(
                np.ascontiguousarray(oth_e[ty0 - r : ty1 + r, tx0 - r : tx1 + r]),
                np.ascontiguousarray(vis_e[ty0:ty1, tx0:tx1]),
                cv2.TM_CCOEFF_NORMED,
            )
            p = find_peak(np.nan_to_num(res, nan=0.0, posinf=0.0, neginf=0.0))
            confident = (
                not p.on_border
                and p.peak >= TILE_MIN_PEAK
                and max(p.second, p.far) <= TILE_MAX_SECOND_RATIO * p.peak
            )
            off = max(abs(p.dx - shift[0]), abs(p.dy - shift[1]))
            out.append(TileCheck(box, p.dx, p.dy, p.peak, confident, confident and off > TILE_TOLERANCE_PX))
    return out


def check_alignment(vis: np.ndarray, other: np.ndarray, valid: Optional[np.ndarray] = None) -> Alignment:
    """Search the shift of ``other`` against ``vis`` and decide kept / corrected / dropped."""
    vis_e, oth_e = gradient_magnitude(vis, valid), gradient_magnitude(other, valid)
    p = find_peak(shift_surface(vis_e, oth_e))
    clean, reason = is_clean(p)
    if not clean:
        decision = "dropped"
    elif max(abs(p.dx), abs(p.dy)) <= KEEP_RADIUS:
        decision = "kept"
    else:
        decision = "corrected"
    al = Alignment(decision, p.dx, p.dy, p.peak, p.second, p.zero, reason)
    if decision != "dropped":
        al.tiles = _tile_checks(vis_e, oth_e, valid if valid is not None else np.ones(vis.shape, bool), al.applied_shift)
    return al


def apply_shift(image: np.ndarray, valid: np.ndarray, dx: int, dy: int) -> Tuple[np.ndarray, np.ndarray]:
    """Integer resampling out(x, y) = image(x + dx, y + dy); pixels taken from outside become invalid."""
    h, w = image.shape
    out = np.zeros_like(image)
    out_valid = np.zeros_like(valid, dtype=bool)
    ys, ye = max(0, -dy), min(h, h - dy)
    xs, xe = max(0, -dx), min(w, w - dx)
    if ys < ye and xs < xe:
        out[ys:ye, xs:xe] = image[ys + dy : ye + dy, xs + dx : xe + dx]
        out_valid[ys:ye, xs:xe] = valid[ys + dy : ye + dy, xs + dx : xe + dx]
    return out, out_valid


def edge_correlation(a: np.ndarray, b: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
    """NCC of the two edge images at zero offset (over ``valid`` pixels): how well a pair is registered."""
    ea, eb = gradient_magnitude(a, valid), gradient_magnitude(b, valid)
    if valid is not None:
        ea, eb = ea[valid], eb[valid]
    ea, eb = ea.ravel() - ea.mean(), eb.ravel() - eb.mean()
    den = float(np.sqrt((ea * ea).sum() * (eb * eb).sum()))
    return float((ea * eb).sum() / den) if den > 0 else 0.0
