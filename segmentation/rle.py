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
