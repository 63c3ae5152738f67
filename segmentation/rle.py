"""COCO run-length encoding helpers (pure numpy + pycocotools, no Beam).

``encode_rle`` gives the JSON-ready COCO compressed RLE that SA-1B uses: ``{"size": [h, w], "counts": str}``
(column-major / Fortran order, as pycocotools expects). Everything here round-trips through
``pycocotools.mask`` so that ``COCO.annToMask`` and SA-1B readers decode our masks.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode an H x W boolean (or 0/1) mask as COCO compressed RLE with ``counts`` as ``str``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode_rle needs an H x W mask, got shape {mask.shape}")
    h, w = mask.shape
    if h == 0 or w == 0:
        # pycocotools cannot encode an empty array; the RLE of an empty mask is a single zero run.
        return {"size": [int(h), int(w)], "counts": mask_utils.frPyObjects({"size": [h, w], "counts": [0]}, h, w)
                ["counts"].decode("ascii")}
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}


def _to_coco(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    h, w = (int(v) for v in rle["size"])
    if isinstance(counts, list):  # uncompressed RLE
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO RLE (compressed ``str``/``bytes`` counts or an uncompressed list) to an H x W bool array."""
    h, w = (int(v) for v in rle["size"])
    if h == 0 or w == 0:
        return np.zeros((h, w), dtype=bool)
    return mask_utils.decode(_to_coco(rle)).astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels."""
    h, w = (int(v) for v in rle["size"])
    if h == 0 or w == 0:
        return 0
    return int(mask_utils.area(_to_coco(rle)))


def rle_to_bbox_xywh(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    """Tight box (x, y, w, h) of the foreground as pycocotools computes it; (0, 0, 0, 0) when empty."""
    h, w = (int(v) for v in rle["size"])
    if h == 0 or w == 0:
        return (0.0, 0.0, 0.0, 0.0)
    x, y, bw, bh = (float(v) for v in mask_utils.toBbox(_to_coco(rle)))
    return (x, y, bw, bh)


def upsampled_window_rle(crop: np.ndarray, rows: np.ndarray, cols: np.ndarray, fy0: int, fx0: int,
                   H: int, W: int) -> dict[str, Any]:
    """pycocotools RLE (bytes counts) of the H x W mask that is ``crop[rows][:, cols]`` at (fy0, fx0), 0 elsewhere.

    ``rows``/``cols`` map every output row/column of the window to a row/column of ``crop`` (non-decreasing,
    e.g. nearest-neighbour upsampling). Built from the run boundaries instead of materialising and scanning the
    full H x W mask (pycocotools.encode over H*W bytes dominates otherwise). Column-major order, as COCO.
    """
    up = crop[rows].astype(np.int8)  # full-resolution rows, working-resolution columns
    edges = np.diff(np.pad(up, ((1, 1), (0, 0))), axis=0)  # +1 run start, -1 run end, per column
    c, r = np.nonzero(edges.T)  # ordered by working column, then row
    # full-resolution columns that show working column c: [first[c], first[c] + reps[c])
    reps = np.bincount(cols, minlength=crop.shape[1])
    first = np.concatenate([[0], np.cumsum(reps)[:-1]])
    n = reps[c]
    k = np.repeat(np.arange(len(c)), n)
    offset = np.arange(len(k)) - np.repeat(np.cumsum(n) - n, n)
    x = fx0 + first[c][k] + offset
    toggles = x.astype(np.int64) * H + fy0 + r[k]
    # a run that ends at the bottom of one column and restarts at the top of the next is one COCO run
    toggles, times = np.unique(toggles, return_counts=True)
    toggles = toggles[times % 2 == 1]
    counts = np.diff(np.concatenate([[0], toggles, [H * W]])).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # the mask reaches the last pixel: no trailing zero run (as COCO)
        counts.pop()
    return mask_utils.frPyObjects({"size": [H, W], "counts": counts}, H, W)


def encode_rle_window(window: np.ndarray, y0: int, x0: int, height: int, width: int) -> dict[str, Any]:
    """``encode_rle`` of the height x width mask that equals ``window`` at (y0, x0) and is empty elsewhere."""
    window = np.asarray(window, dtype=bool)
    h, w = window.shape
    if not (0 <= y0 and 0 <= x0 and y0 + h <= height and x0 + w <= width):
        raise ValueError(f"window {h}x{w} at (y={y0}, x={x0}) does not fit in {height}x{width}")
    if height == 0 or width == 0:
        return encode_rle(np.zeros((height, width), dtype=bool))
    rle = upsampled_window_rle(window, np.arange(h), np.arange(w), y0, x0, height, width)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}
