from __future__ import annotations

import io

import numpy as np
from PIL import Image

from veilset.audit.imaging import (WINDOW_MIN_SIDE, anonymized_thumbnail, coverage, deterministic_sample, pixelate,
                                    region_mask, region_windows)


def test_coverage_of_boxes():
    mask = region_mask([(10, 10, 20, 20)], 50, 40)
    assert mask.sum() == 100
    assert coverage((10, 10, 20, 20), mask) == 1.0
    assert coverage((15, 10, 25, 20), mask) == 0.5
    assert coverage((30, 30, 30, 30), mask) == 0.0


def test_pixelate_leaves_at_most_blocks_squared_colours():
    rng = np.random.default_rng(0)
    region = rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)
    assert len(np.unique(pixelate(region, 4).reshape(-1, 3), axis=0)) <= 16


def test_thumbnail_never_contains_the_raw_box_pixels():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (100, 100, 3), dtype=np.uint8)
    thumb = np.asarray(Image.open(io.BytesIO(anonymized_thumbnail(image, (40, 40, 60, 60)))).convert("RGB"))
    h, w = thumb.shape[:2]
    centre = thumb[int(h * 0.4):int(h * 0.6), int(w * 0.4):int(w * 0.6)].reshape(-1, 3)
    assert len(np.unique(centre, axis=0)) <= 36


def test_sample_is_deterministic_and_sorted():
    ids = [f"sa_{i:032x}" for i in range(50)]
    a = deterministic_sample(ids, 5)
    assert a == deterministic_sample(list(reversed(ids)), 5) == sorted(a) and len(a) == 5
    assert deterministic_sample(ids, None) == sorted(ids)


def test_region_windows_hold_each_box_once_merged_and_clipped():
    boxes = [(300, 300, 340, 320), (350, 305, 380, 325), (900, 600, 1000, 650), (0, 0, 10, 10)]
    wins = region_windows(boxes, 1200, 700)
    for x0, y0, x1, y1 in boxes:
        assert sum(w[0] <= x0 and w[1] <= y0 and w[2] >= x1 and w[3] >= y1 for w in wins) == 1
    assert all(0 <= w[0] < w[2] <= 1200 and 0 <= w[1] < w[3] <= 700 for w in wins)
    assert all(not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]) for a in wins for b in wins if a != b)
    assert len(wins) < len(boxes)  # the first two boxes share a window (their margins overlap)
    first = next(w for w in wins if w[0] <= 300 and w[1] <= 300 and w[2] >= 380 and w[3] >= 325)
    assert min(first[2] - first[0], first[3] - first[1]) >= WINDOW_MIN_SIDE  # away from the borders: full size
