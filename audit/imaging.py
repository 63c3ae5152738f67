"""Pure image helpers for the audit (numpy + Pillow, no Beam): decode, region coverage, anonymized thumbnails,
deterministic sampling."""
from __future__ import annotations

import hashlib
import io
from typing import Any, Iterable, Sequence

import numpy as np

THUMB_SIDE = 128  # px, long side of a report thumbnail
THUMB_PIXEL_BLOCKS = 6  # a face box is shown as at most 6 x 6 flat blocks: enough to see where, not who
THUMB_PIXEL_MARGIN = 0.25  # pixelate beyond the box on every side: a tight box can leave brows or chin


def decode_rgb(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def region_mask(boxes_xyxy: Iterable[Sequence[float]], width: int, height: int) -> np.ndarray:
    """Boolean H x W raster of the union of boxes (pixels whose centre lies inside a box)."""
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in boxes_xyxy:
        c0, r0 = max(0, int(np.ceil(x0 - 0.5))), max(0, int(np.ceil(y0 - 0.5)))
        c1, r1 = min(width, int(np.ceil(x1 - 0.5))), min(height, int(np.ceil(y1 - 0.5)))
        if c1 > c0 and r1 > r0:
            mask[r0:r1, c0:c1] = True
    return mask


WINDOW_PAD = 0.25  # of a region's longer side, on every side of it: a little grey context around its content
WINDOW_MIN_PAD = 16  # px
# px: a window is at least this wide and high where the image allows. The detectors fire differently next to an
# input's border: on 40 eval photos with the source pixels put back in the regions, the whole image re-detected 123
# of 165 areas, windows with no minimum 95, 256 px 108 (384: 108, 512: 105) at about 1/4 of the whole image's time.
WINDOW_MIN_SIDE = 256


def region_windows(boxes_xyxy: Iterable[Sequence[float]], width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Integer windows (x0, y0, x1, y1) that hold every box with a margin (``WINDOW_PAD`` of its longer side, at
    least ``WINDOW_MIN_PAD`` px, grown to ``WINDOW_MIN_SIDE``), clipped to the image; windows that overlap are merged
    into their bounding box until none overlaps, so every box lies whole inside exactly one window."""
    wins = []
    for x0, y0, x1, y1 in boxes_xyxy:
        pad = max(WINDOW_MIN_PAD, WINDOW_PAD * max(x1 - x0, y1 - y0))
        px, py = max(pad, (WINDOW_MIN_SIDE - (x1 - x0)) / 2), max(pad, (WINDOW_MIN_SIDE - (y1 - y0)) / 2)
        win = (max(0, int(np.floor(x0 - px))), max(0, int(np.floor(y0 - py))),
               min(width, int(np.ceil(x1 + px))), min(height, int(np.ceil(y1 + py))))
        if win[2] > win[0] and win[3] > win[1]:
            wins.append(win)
    return sorted(_merge_overlapping(wins), key=lambda b: (b[1], b[0]))


def _merge_overlapping(wins: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Windows that overlap replaced by their bounding box, until none overlaps."""
    merged = True
    while merged:
        merged, out = False, []
        for win in wins:
            hit = next((n for n, o in enumerate(out) if win[0] < o[2] and o[0] < win[2] and win[1] < o[3]
                        and o[1] < win[3]), None)
            if hit is None:
                out.append(win)
                continue
            o = out[hit]
            out[hit] = (min(o[0], win[0]), min(o[1], win[1]), max(o[2], win[2]), max(o[3], win[3]))
            merged = True
        wins = out
    return wins


def coverage(box_xyxy: Sequence[float], mask: np.ndarray) -> float:
    """Fraction of ``box_xyxy``'s pixels inside ``mask`` (0 for an empty box)."""
    inner = region_mask([box_xyxy], mask.shape[1], mask.shape[0])
    n = int(inner.sum())
    return float((inner & mask).sum()) / n if n else 0.0


def pixelate(region: np.ndarray, blocks: int) -> np.ndarray:
    """Replace ``region`` by at most ``blocks`` x ``blocks`` flat tiles (block means)."""
    h, w = region.shape[:2]
    if h == 0 or w == 0:
        return region.copy()
    out = region.copy()
    ys = np.linspace(0, h, min(blocks, h) + 1).astype(int)
    xs = np.linspace(0, w, min(blocks, w) + 1).astype(int)
    for y0, y1 in zip(ys, ys[1:]):
        for x0, x1 in zip(xs, xs[1:]):
            out[y0:y1, x0:x1] = region[y0:y1, x0:x1].reshape(-1, region.shape[2]).mean(axis=0)
    return out


def anonymized_thumbnail(image: np.ndarray, box_xyxy: Sequence[float], context: float = 0.6,
                         side: int = THUMB_SIDE) -> bytes:
    """PNG of the area around a face box, with the box (enlarged by ``THUMB_PIXEL_MARGIN``) pixelated *before*
    anything leaves this function, and the box outlined in red. The raw face pixels never reach the report."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    mx, my = (x1 - x0) * THUMB_PIXEL_MARGIN, (y1 - y0) * THUMB_PIXEL_MARGIN
    px0, py0 = int(np.clip(np.floor(x0 - mx), 0, w)), int(np.clip(np.floor(y0 - my), 0, h))
    px1, py1 = int(np.clip(np.ceil(x1 + mx), 0, w)), int(np.clip(np.ceil(y1 + my), 0, h))
    work = image.copy()
    work[py0:py1, px0:px1] = pixelate(image[py0:py1, px0:px1], THUMB_PIXEL_BLOCKS)
    return box_thumbnail(work, box_xyxy, context, side)


def box_thumbnail(image: np.ndarray, box_xyxy: Sequence[float], context: float = 0.6,
                  side: int = THUMB_SIDE) -> bytes:
    """PNG of the area around a box (``context`` of its size on every side) as it is in ``image``, the box
    outlined in red (a mask's box: published pixels, anonymized already)."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    bx0, by0 = int(np.clip(np.floor(x0), 0, w)), int(np.clip(np.floor(y0), 0, h))
    bx1, by1 = int(np.clip(np.ceil(x1), 0, w)), int(np.clip(np.ceil(y1), 0, h))
    pad_x, pad_y = (x1 - x0) * context, (y1 - y0) * context
    cx0, cy0 = int(min(max(0, x0 - pad_x), w - 1)), int(min(max(0, y0 - pad_y), h - 1))
    cx1, cy1 = int(min(w, x1 + pad_x)), int(min(h, y1 + pad_y))
    crop = Image.fromarray(np.ascontiguousarray(image[cy0:max(cy1, cy0 + 1), cx0:max(cx1, cx0 + 1)]))
    scale = side / max(crop.size)
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.NEAREST)
    draw = ImageDraw.Draw(crop)
    draw.rectangle([(bx0 - cx0) * scale, (by0 - cy0) * scale, (bx1 - cx0) * scale - 1, (by1 - cy0) * scale - 1],
                   outline=(230, 20, 20), width=2)
    return _png(crop)


def image_thumbnail(image: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """PNG of the whole image, its long side ``side`` px (an image-level finding's published image)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    scale = side / max(im.size)
    return _png(im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR))


def _png(im: Any) -> bytes:
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def deterministic_sample(image_ids: Iterable[str], n: int | None) -> list[str]:
    """``n`` image IDs chosen by the sha256 of the ID (stable across runs and machines; all when n is None),
    returned sorted."""
    ordered = sorted(set(image_ids))
    if n is None or n >= len(ordered):
        return ordered
    return sorted(sorted(ordered, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:n])
