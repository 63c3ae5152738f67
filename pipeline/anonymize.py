"""Irreversible anonymization of detected faces (ellipses) and licence plates (boxes).

Pure (numpy + cv2; no Beam). ``anonymize`` returns a new array and a JSON-able record; pixels outside the
regions are bit-identical to the input.

Method "pixelate" (default), per region, on the region's bounding rectangle:
1. average the original pixels into coarse blocks of ``block_size`` px (``max(8, min(w, h) / 6)`` of the
   enlarged region: a face spans about 4 x 4 blocks) -- this is what destroys the identity: at most ~36 numbers
   per channel survive from the whole face;
2. add noise (sigma ``BLOCK_NOISE``) to every block mean, so even those averages are not the originals';
3. upsample the blocks (nearest) and Gaussian-blur them (sigma = block/3) so that no block edges remain that
   would let a reader re-align a grid;
4. add per-pixel noise (sigma ``PIXEL_NOISE``) so that a deconvolution of the blur amplifies noise, not face.
All noise comes from ``np.random.default_rng(seed)`` (seed from the caller, e.g. ``seed_for_image(image_id)``):
deterministic per image, the global RNG is never touched. A plain Gaussian blur is *not* used on its own:
with a known kernel it can be largely inverted by Wiener deconvolution (see the tests).

Method "solid": the region is filled with ``SOLID_RGB`` (a fixed mid grey that depends on nothing in the image).

Margin: ``DEFAULT_MARGIN = 0.25`` of the box width/height is added on each side. Detector boxes are tight
(brow to chin, no hair, ears or jaw line), and an ellipse inscribed in a box leaves the box corners out: the
ellipse inscribed in the enlarged box contains the whole detector box only when the margin is >= (sqrt(2) - 1) / 2
~= 0.207. 0.25 covers the full detector box plus slack for box jitter; plates (boxes) get the same margin.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from veilset.detectors.base import FACE, LICENSE_PLATE, Detection

METHODS = ("pixelate", "solid")
DEFAULT_METHOD = "pixelate"
DEFAULT_MARGIN = 0.25
SHAPES = ("ellipse", "box")
SHAPE_FOR_LABEL = {FACE: "ellipse", LICENSE_PLATE: "box"}
SOLID_RGB = (128, 128, 128)
MIN_BLOCK = 8  # px
BLOCKS_PER_SHORT_SIDE = 6
BLOCK_NOISE = 10.0  # grey levels, added to each block mean
PIXEL_NOISE = 6.0  # grey levels, added to each pixel after the blur


@dataclass(frozen=True)
class Region:
    """An area to anonymize, in pixel coordinates of the image it was made for.

    ``box_xyxy``: the enlarged detection box clipped to the image (what is affected, at most).
    ``ellipse_xyxy``: for ellipses, the bounding box of the full (unclipped) ellipse -- a face cut by the image
    border keeps its ellipse, it is not shrunk into the clipped box. ``None`` for boxes.
    """

    shape: str
    box_xyxy: tuple[float, float, float, float]
    label: str
    ellipse_xyxy: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {self.shape!r}")
        if len(self.box_xyxy) != 4:
            raise ValueError(f"box_xyxy needs 4 numbers, got {self.box_xyxy!r}")
        if self.shape == "ellipse" and self.ellipse_xyxy is None:
            raise ValueError("an ellipse region needs ellipse_xyxy")

    def to_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "label": self.label, "box_xyxy": [float(v) for v in self.box_xyxy]}


def _validate_margin(margin: float) -> float:
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    return float(margin)


def _validate_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def seed_for_image(image_id: str) -> int:
    """A deterministic 64-bit noise seed for an image ID (stable across runs, machines and Python versions)."""
    return int.from_bytes(hashlib.sha256(b"veilset-anonymize:" + image_id.encode()).digest()[:8], "big")


def regions_for(detections: Sequence[Detection], width: int, height: int, *,
                margin: float = DEFAULT_MARGIN) -> list[Region]:
    """Faces -> ellipses, licence plates -> boxes, each enlarged by ``margin`` of its size on every side and
    clipped to the ``width`` x ``height`` image. Detections entirely outside the image give no region."""
    margin = _validate_margin(margin)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    regions = []
    for det in detections:
        x0, y0, x1, y1 = (float(v) for v in det.box_xyxy)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
            raise ValueError(f"invalid box_xyxy {det.box_xyxy!r} from {det.detector!r}")
        shape = SHAPE_FOR_LABEL.get(det.label)
        if shape is None:
            raise ValueError(f"no anonymization shape for label {det.label!r}")
        mx, my = margin * (x1 - x0), margin * (y1 - y0)
        ex0, ey0, ex1, ey1 = x0 - mx, y0 - my, x1 + mx, y1 + my
        cx0, cy0 = min(max(ex0, 0.0), float(width)), min(max(ey0, 0.0), float(height))
        cx1, cy1 = min(max(ex1, 0.0), float(width)), min(max(ey1, 0.0), float(height))
        if cx1 <= cx0 or cy1 <= cy0:
            # entirely outside the image, or degenerate: a zero-size box still marks one pixel if inside
            if not (0 <= ex0 < width and 0 <= ey0 < height):
                continue
            cx1, cy1 = max(cx1, min(cx0 + 1.0, float(width))), max(cy1, min(cy0 + 1.0, float(height)))
        regions.append(Region(shape=shape, box_xyxy=(cx0, cy0, cx1, cy1), label=det.label,
                              ellipse_xyxy=(ex0, ey0, ex1, ey1) if shape == "ellipse" else None))
    return regions


def _pixel_span(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Integer [start, stop) of every pixel that the interval [lo, hi) touches, clipped to [0, size)."""
    start = max(0, min(size, math.floor(lo)))
    stop = max(start, min(size, math.ceil(hi)))
    return start, stop


def _region_rect(region: Region, height: int, width: int) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1) integer rectangle covering the region's mask."""
    x0, y0, x1, y1 = region.box_xyxy
    c0, c1 = _pixel_span(x0, x1, width)
    r0, r1 = _pixel_span(y0, y1, height)
    return r0, r1, c0, c1


def _region_local_mask(region: Region, rect: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = rect
    if region.shape == "box":
        return np.ones((r1 - r0, c1 - c0), bool)
    ex0, ey0, ex1, ey1 = region.ellipse_xyxy
    cx, cy = (ex0 + ex1) / 2.0, (ey0 + ey1) / 2.0
    # +0.5 px: a pixel whose square touches the ellipse boundary counts (conservative; tiny faces never vanish)
    rx = max((ex1 - ex0) / 2.0, 0.5) + 0.5
    ry = max((ey1 - ey0) / 2.0, 0.5) + 0.5
    ys = (np.arange(r0, r1, dtype=np.float64) + 0.5 - cy) / ry
    xs = (np.arange(c0, c1, dtype=np.float64) + 0.5 - cx) / rx
    return (ys[:, None] ** 2 + xs[None, :] ** 2) <= 1.0


def region_mask(regions: Sequence[Region], height: int, width: int) -> np.ndarray:
    """Bool H x W mask of every pixel covered by any region (box pixels touched by the box; ellipse pixels whose
    centre lies within the ellipse grown by half a pixel)."""
    mask = np.zeros((height, width), bool)
    for region in regions:
        rect = _region_rect(region, height, width)
        r0, r1, c0, c1 = rect
        if r1 > r0 and c1 > c0:
            mask[r0:r1, c0:c1] |= _region_local_mask(region, rect)
    return mask


def block_size_for(region: Region) -> int:
    """Pixelation block edge in px for a region: ``max(MIN_BLOCK, min(w, h) / BLOCKS_PER_SHORT_SIDE)`` of the
    unclipped region, so a face half outside the image is pixelated as coarsely as a whole one."""
    x0, y0, x1, y1 = region.ellipse_xyxy if region.ellipse_xyxy is not None else region.box_xyxy
    return max(MIN_BLOCK, int(round(min(x1 - x0, y1 - y0) / BLOCKS_PER_SHORT_SIDE)))


def pixelate_patch(patch: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """Coarse block means + noise, nearest upsampling, Gaussian blur, per-pixel noise. ``patch``: h x w x 3."""
    h, w = patch.shape[:2]
    bh, bw = max(1, math.ceil(h / block)), max(1, math.ceil(w / block))
    means = cv2.resize(patch, (bw, bh), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(bh, bw, -1)
    means += BLOCK_NOISE * rng.standard_normal(means.shape, dtype=np.float32)
    coarse = cv2.resize(means, (w, h), interpolation=cv2.INTER_NEAREST).reshape(h, w, -1)
    sigma = block / 3.0
    ksize = 2 * int(math.ceil(3 * sigma)) + 1
    smooth = cv2.GaussianBlur(np.ascontiguousarray(coarse), (ksize, ksize), sigmaX=sigma, sigmaY=sigma,
                              borderType=cv2.BORDER_REFLECT).reshape(h, w, -1)
    smooth += PIXEL_NOISE * rng.standard_normal(smooth.shape, dtype=np.float32)
    return np.clip(np.rint(smooth), 0, 255).astype(np.uint8)


def anonymize(pixels: np.ndarray, detections: Sequence[Detection], *, method: str = DEFAULT_METHOD,
              margin: float = DEFAULT_MARGIN, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Anonymize every detection; returns ``(new_pixels, record)``. ``pixels`` is never modified.

    record: ``{"method", "margin", "regions": [{"shape", "label", "box_xyxy"}, ...]}`` (JSON-able; no pixels).
    """
    _validate_method(method)
    margin = _validate_margin(margin)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be an H x W x 3 uint8 array, got "
                         f"{getattr(pixels, 'dtype', type(pixels))} {getattr(pixels, 'shape', '')}")
    height, width = pixels.shape[:2]
    regions = regions_for(detections, width, height, margin=margin)
    out = np.array(pixels, copy=True, order="C")
    rng = np.random.default_rng(int(seed))
    for region in regions:
        rect = _region_rect(region, height, width)
        r0, r1, c0, c1 = rect
        if r1 <= r0 or c1 <= c0:
            continue
        local = _region_local_mask(region, rect)
        view = out[r0:r1, c0:c1]  # reads what earlier (overlapping) regions left: never the original there
        if method == "solid":
            np.copyto(view, np.asarray(SOLID_RGB, np.uint8), where=local[..., None])
        else:
            np.copyto(view, pixelate_patch(view, block_size_for(region), rng), where=local[..., None])
    record = {"method": method, "margin": margin, "regions": [r.to_dict() for r in regions]}
    return out, record
