"""The mask generators as small named steps: each step a function a test can drive (felzenszwalb here, SAM's
generator in test_amg.py); no function in segmentation/ longer than a screen."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from veilset.segmentation import felzenszwalb as fz

SEGMENTATION = Path(__file__).resolve().parents[2] / "segmentation"
MAX_FUNCTION_LINES = 60


def function_lengths(folder: Path) -> list[tuple[int, str]]:
    """(lines, "file:line name") of every function and method under ``folder``, decorators excluded."""
    out = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{path.name}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


def test_no_function_in_segmentation_is_longer_than_a_screen():
    lengths = function_lengths(SEGMENTATION)
    assert len(lengths) > 50
    too_long = [f"{where} ({n} lines)" for n, where in lengths if n > MAX_FUNCTION_LINES]
    assert not too_long, f"split these into named steps (max {MAX_FUNCTION_LINES} lines): {too_long}"


# ------------------------------------------------------------------------------------------ felzenszwalb
def test_felzenszwalb_steps_compose_to_generate():
    image = skimage.data.coffee()
    opt = fz.FelzenszwalbOptions(scales=(300.0, 100.0), work_max_side=200, max_masks=20)
    work = fz.working_image(image, opt.work_max_side)
    assert max(work.small.shape[:2]) == 200 and (work.height, work.width) == image.shape[:2]
    assert work.pixel_area == pytest.approx(image.shape[0] * image.shape[1] / (work.small.shape[0] * 200))
    rows, cols = work.row_col_maps()
    assert len(rows) == image.shape[0] and rows.max() == work.small.shape[0] - 1 and cols.max() == 199
    scales = fz.level_scales(opt.scales)
    assert scales == [100.0, 300.0] and fz.level_scales((50.0,)) == [50.0, 100.0]  # single scale: + companion
    levels = fz.segment_levels(work.small, scales, opt.sigma, max(1, int(work.low_area(opt.min_area))))
    assert len(levels) == 2 and all(ids.shape == work.small.shape[:2] for ids, _, _ in levels)
    best, pairs = fz.scale_overlaps(levels, 2)
    assert set(best) == {(0, 1), (1, 0)} and set(pairs) == {(0, 1)}
    assert all(0.0 < b.min() and b.max() <= 1.0 for b in best.values())
    cands = fz.candidates(levels, best, work.pixel_area, opt.min_area, opt.max_coverage)
    order = cands.order()
    assert sorted(order) == list(range(len(cands.ids)))
    assert [cands.stability[k] for k in order] == sorted(cands.stability, reverse=True)
    overlaps = fz.overlapping(pairs, cands, 2, opt.nms_iou)
    assert all(k in overlaps[o] for k, others in overlaps.items() for o in others)  # symmetric
    masks = fz.select_masks(cands, overlaps, levels, work, opt)
    assert masks == fz.FelzenszwalbMaskGenerator(opt).generate(image) and 1 <= len(masks) <= 20


def test_one_component_becomes_one_full_resolution_annotation():
    labels = np.zeros((8, 10), np.int64)
    labels[2:6, 3:7] = 1
    level = fz._components(labels)
    work = fz.WorkingImage(np.zeros((8, 10, 3), np.uint8), 16, 20)  # 2x upsampling
    rows, cols = work.row_col_maps()
    square = int(level[0][3, 4])
    ann = fz.annotation(level, square, 0.9, rows, cols, 1.0, 16, 20)
    assert ann.area == 64 and ann.bbox_xywh == (6.0, 4.0, 8.0, 8.0) and ann.stability_score == 0.9
    assert ann.crop_box_xywh == (0.0, 0.0, 20.0, 16.0) and len(ann.point_coords) == 1
