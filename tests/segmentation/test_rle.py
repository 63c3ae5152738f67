import numpy as np
import pytest
from pycocotools import mask as mask_utils

from veilset.segmentation.rle import decode_rle, encode_rle, encode_rle_window, rle_area, rle_to_bbox_xywh


def _random_masks():
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (2, 3), (17, 5), (64, 48)]:
        yield rng.random((h, w)) < 0.4
    yield np.zeros((10, 7), bool)
    yield np.ones((10, 7), bool)


@pytest.mark.parametrize("mask", list(_random_masks()))
def test_round_trip_through_pycocotools(mask):
    rle = encode_rle(mask)
    assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    coco = {"size": rle["size"], "counts": rle["counts"].encode()}
    np.testing.assert_array_equal(mask_utils.decode(coco).astype(bool), mask)
    assert rle_area(rle) == int(mask.sum())


def test_bbox_is_xywh_and_tight():
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:25] = True
    assert rle_to_bbox_xywh(encode_rle(mask)) == (10.0, 5.0, 15.0, 4.0)
    assert rle_to_bbox_xywh(encode_rle(np.zeros((4, 4), bool))) == (0.0, 0.0, 0.0, 0.0)


def test_uncompressed_and_bytes_counts_decode():
    mask = np.eye(4, dtype=bool)
    rle = encode_rle(mask)
    np.testing.assert_array_equal(decode_rle({"size": [4, 4], "counts": rle["counts"].encode()}), mask)
    np.testing.assert_array_equal(decode_rle({"size": [4, 4], "counts": [0, 1, 4, 1, 4, 1, 4, 1]}), mask)


def test_empty_shapes_and_bad_rank():
    rle = encode_rle(np.zeros((0, 5), bool))
    assert decode_rle(rle).shape == (0, 5) and rle_area(rle) == 0
    with pytest.raises(ValueError, match="H x W"):
        encode_rle(np.zeros((2, 2, 3), bool))


def test_window_encoding_equals_full_mask_encoding():
    rng = np.random.default_rng(2)
    for _ in range(100):
        H, W = (int(v) for v in rng.integers(1, 25, 2))
        h, w = int(rng.integers(0, H + 1)), int(rng.integers(0, W + 1))
        y0, x0 = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        window = rng.random((h, w)) < rng.random()
        full = np.zeros((H, W), bool)
        full[y0:y0 + h, x0:x0 + w] = window
        assert encode_rle_window(window, y0, x0, H, W) == encode_rle(full)
    with pytest.raises(ValueError, match="does not fit"):
        encode_rle_window(np.ones((3, 3), bool), 2, 0, 4, 4)
