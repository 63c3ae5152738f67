"""Masks: every RLE decodes to its image's size, and each annotation's area and bbox match the decoded mask.

The compressed-RLE string is decoded here into its run lengths (COCO's 6-bit LEB128-like code), so a damaged
string is reported instead of crashing or silently mis-decoding in pycocotools' C code; the runs must cover
exactly height x width pixels. Area and box are computed from the runs (no dense mask is materialised).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from veilset.plugins import Plugin
from veilset.audit.findings import MASKS, CheckResult, Finding
from veilset.audit.release import Release

BBOX_TOLERANCE_PX = 1.0  # SAM's XYWH boxes use w = x_max - x_min, pycocotools' toBbox x_max - x_min + 1


class RleError(ValueError):
    pass


def rle_runs(counts: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (background first)."""
    runs: list[int] = []
    pos, n = 0, len(counts)
    while pos < n:
        value, shift, more = 0, 0, True
        while more:
            if pos >= n:
                raise RleError("counts string ends inside a number")
            c = ord(counts[pos]) - 48
            if not 0 <= c < 64:
                raise RleError(f"invalid character {counts[pos]!r} at {pos}")
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise RleError(f"negative run length {value} (run {len(runs)})")
        runs.append(value)
    return runs


def check_annotation(ann: dict[str, Any], width: int, height: int) -> list[str]:
    """Problems of one SA-1B/COCO annotation for an image of ``width`` x ``height``; empty when valid."""
    from pycocotools import mask as mask_utils

    seg = ann.get("segmentation") or {}
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not isinstance(counts, str):
        return [f"segmentation is not a compressed RLE: {str(seg)[:80]}"]
    size = [int(v) for v in size]
    problems = []
    if size != [height, width]:
        problems.append(f"RLE size {size} is not the image's [{height}, {width}]")
    try:
        runs = rle_runs(counts)
    except RleError as err:
        return problems + [f"RLE counts do not decode: {err}"]
    if sum(runs) != size[0] * size[1]:
        return problems + [f"RLE runs cover {sum(runs)} pixels, size {size} needs {size[0] * size[1]}"]
    # The runs are the decoded mask (column-major, background first): area is the foreground run total, and
    # pycocotools computes the tight box from the same runs (XYWH, w = x_max - x_min + 1).
    area = int(sum(runs[1::2]))
    if ann.get("area") != area:
        problems.append(f"area {ann.get('area')!r} but the decoded mask has {area} pixels")
    true = np.asarray(mask_utils.toBbox({"size": size, "counts": counts.encode()}), dtype=float)
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        problems.append(f"bbox {bbox!r} is not XYWH")
    elif np.abs(np.asarray(bbox, dtype=float) - true).max() > BBOX_TOLERANCE_PX:
        problems.append(f"bbox {[round(float(v), 1) for v in bbox]} but the decoded mask spans "
                        f"{[float(v) for v in true]} (XYWH)")
    return problems


def mask_box(ann: dict[str, Any]) -> tuple[float, float, float, float] | None:
    """The annotation's bbox as XYXY (where the report crops the mask's region), None when it is not a box."""
    bbox = ann.get("bbox")
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
        return None
    x, y, w, h = (float(v) for v in bbox)
    return (x, y, x + w, y + h) if w > 0 and h > 0 else None


def check_masks(release: Release) -> CheckResult:
    findings: list[Finding] = []
    sizes = {row["image_id"]: (row.get("width"), row.get("height")) for _, row in release.all_index_rows()}
    checked = 0
    for rec in release.iter_records():
        if not rec.masks:
            continue
        width, height = sizes.get(rec.image_id, (rec.width, rec.height))
        if not isinstance(width, int) or not isinstance(height, int):
            continue  # integrity reports images without a size
        for ann in rec.masks:
            checked += 1
            for problem in check_annotation(ann, width, height):
                findings.append(Finding(check=MASKS, file=rec.file, image_id=rec.image_id, box_xyxy=mask_box(ann),
                                        message=f"mask {ann.get('id')}: {problem}"))
    return CheckResult.from_findings(MASKS, findings, f"{checked} mask annotations decoded (every format)",
                                     {"annotations": checked})


PLUGIN = Plugin("audit check", MASKS, lambda ctx: check_masks(ctx.release),
                summary="mask annotations decode, fit their image and agree with their bbox and area")
