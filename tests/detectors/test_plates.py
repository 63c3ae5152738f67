import json

import cv2
import numpy as np
import pytest

from veilset.detectors import plates
from veilset.detectors.registry import build_detector


def plate_scene(text="AB 123 CD", at=(250, 250), size=(700, 400)):
    w, h = size
    img = np.full((h, w, 3), 120, np.uint8)
    img[:, :, 2] = 140
    x, y = at
    cv2.rectangle(img, (x, y), (x + 200, y + 50), (255, 255, 255), -1)
    cv2.rectangle(img, (x, y), (x + 200, y + 50), (0, 0, 0), 2)
    cv2.putText(img, text, (x + 12, y + 38), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 3)
    return img, (x, y, x + 200, y + 50)


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_clp_priors_layout():
    pri = plates.clp_priors(64, 96)
    # 8x12 cells * 2 sizes + 4x6 * 2 + 2x3 * 2
    assert pri.shape == (8 * 12 * 2 + 4 * 6 * 2 + 2 * 3 * 2, 4)
    assert pri[0] == pytest.approx([4 / 96, 4 / 64, 24 / 96, 24 / 64])
    assert pri[1] == pytest.approx([4 / 96, 4 / 64, 48 / 96, 48 / 64])
    boxes = plates.clp_decode(np.zeros((len(pri), 4)), pri, 96, 64)
    assert boxes[0] == pytest.approx([4 - 12, 4 - 12, 4 + 12, 4 + 12])


def test_db_boxes_on_a_synthetic_probability_map():
    prob = np.zeros((100, 200), np.float32)
    prob[40:60, 50:150] = 0.9  # a 100 x 20 text line
    prob[5:7, 5:7] = 0.9  # too small
    boxes, scores, sizes = plates.db_boxes(prob, unclip_ratio=1.5)
    assert len(boxes) == 1 and 0.8 < scores[0] <= 0.9  # the 2x2 dilation adds a border of zeros
    d = 100 * 20 * 1.5 / (2 * 120)  # unclip distance 12.5
    assert boxes[0] == pytest.approx([50 - d, 40 - d, 150 + d, 60 + d], abs=2)
    assert sizes[0][0] / sizes[0][1] > 2


@pytest.mark.parametrize("name", ["pptext", "plates"])
def test_finds_a_rendered_plate(name):
    img, ref = plate_scene()
    dets = build_detector(name).detect(img)
    assert dets and dets[0].label == "license_plate" and dets[0].detector == name
    assert iou(dets[0].box_xyxy, ref) >= 0.5
    assert build_detector(name).detect(np.full((300, 400, 3), 128, np.uint8)) == []


def test_text_filter_drops_non_plate_shapes():
    img = np.full((600, 800, 3), 230, np.uint8)
    cv2.putText(img, "A", (300, 400), cv2.FONT_HERSHEY_SIMPLEX, 8.0, (0, 0, 0), 20)  # a huge, square glyph
    loose = build_detector("pptext:min_aspect=0,max_height_frac=1").detect(img)
    strict = build_detector("pptext").detect(img)
    assert len(loose) >= 1 and strict == []


def test_clpdet_runs_and_maps_to_source():
    img, _ = plate_scene(size=(1600, 900), at=(900, 600))
    det = build_detector("clpdet:threshold=0.01")
    for d in det.detect(img):
        assert 0 <= d.box_xyxy[0] <= d.box_xyxy[2] <= 1600 and 0 <= d.box_xyxy[1] <= d.box_xyxy[3] <= 900


def test_identity_names_both_parts():
    ident = build_detector("plates").identity()
    json.dumps(ident)
    assert ident["parts"]["clpdet"]["weights"] == "clp_det.onnx"
    assert ident["parts"]["pptext"]["weights"] == "ch_PP-OCRv4_det_infer.onnx"
    assert len(ident["parts"]["pptext"]["weights_sha256"]) == 64


def test_every_text_line_that_reads_as_a_plate_is_kept_not_only_the_best():
    """Background plates: clp_det finds none of these rendered plates and the union keeps one unread text line
    (``max_text``); recognition keeps the other two, which read as plate numbers, and drops the sign's word."""
    from tests.audit.tamper import draw_plate, paste

    rng = np.random.default_rng(1)
    img = (np.full((720, 1280, 3), (90, 100, 95), np.uint8) + rng.integers(0, 20, (720, 1280, 3))).astype(np.uint8)
    where = {"KX 4827": (100, 100), "PJO 5897": (700, 200), "OLD 3379": (300, 500), "PARKING": (900, 550)}
    for text, (x, y) in where.items():
        img = paste(img, draw_plate(text, height=30), x, y)

    def found(spec):
        dets = build_detector(spec).detect(img)
        return {t for t, (x, y) in where.items() for d in dets
                if d.box_xyxy[0] <= x + 60 <= d.box_xyxy[2] and d.box_xyxy[1] <= y + 15 <= d.box_xyxy[3]}

    assert found("plates") == {"KX 4827", "PJO 5897", "OLD 3379"}
    assert len(found("plates:read=0")) == 1  # the best line only: what the build published clear before
    assert "PARKING" in found("pptext:max_side=1280")  # the text detector does box the sign


def test_text_lines_inside_a_clp_box_complete_it_as_one_box():
    boxes = np.array([[100.0, 100, 200, 140]])
    lines = np.array([[95.0, 90, 190, 104], [120.0, 110, 180, 130]])
    inter = plates.ops.intersection_matrix(lines, boxes)
    out, scores = plates._absorb(boxes, np.array([0.5]), lines, np.array([0.7, 0.6]), inter)
    assert out.tolist() == [[95.0, 90, 200, 140]] and scores.tolist() == [0.7]
