from __future__ import annotations

import io

import numpy as np
from PIL import Image

from veilset.audit.imaging import anonymized_thumbnail, coverage, deterministic_sample, pixelate, region_mask


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
