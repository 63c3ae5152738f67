"""Detection by resolution on the shipped models: faces and plates across panoramas and tall images are found as
in an ordinary photo (detectors/tiling.py). Before the policy, a 12000 x 1500 panorama was searched at 1280 x 160."""
import dataclasses

import cv2
import numpy as np
import pytest

from veilset.detectors import ops
from veilset.detectors.registry import build_detector
from tests.imagegen import ASTRONAUT_FACE_BOX_XYXY, astronaut


def _background(height, width):
    """A calm, face-free texture (smooth gradients)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.stack([100 + 40 * np.sin(xx / 370.0), 110 + 30 * np.cos(yy / 290.0), 90 + 20 * np.sin((xx + yy) / 530.0)],
                   axis=-1)
    return img.astype(np.uint8)


def _paste_faces(canvas, positions, face_heights):
    """Astronaut photos scaled so that the face is ``face_height`` px tall, pasted at ``positions`` (top-left of the
    face box); returns the face boxes."""
    fx0, fy0, fx1, fy1 = ASTRONAUT_FACE_BOX_XYXY
    photo = astronaut()
    truth = []
    for (x, y), fh in zip(positions, face_heights):
        f = fh / (fy1 - fy0)
        small = cv2.resize(photo, (round(512 * f), round(512 * f)), interpolation=cv2.INTER_AREA)
        ox, oy = int(x - fx0 * f), int(y - fy0 * f)  # photo origin so that the face lands at (x, y)
        h, w = canvas.shape[:2]
        sx0, sy0 = max(0, -ox), max(0, -oy)
        dx0, dy0 = max(0, ox), max(0, oy)
        dx1, dy1 = min(w, ox + small.shape[1]), min(h, oy + small.shape[0])
        canvas[dy0:dy1, dx0:dx1] = small[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
        truth.append((ox + fx0 * f, oy + fy0 * f, ox + fx1 * f, oy + fy1 * f))
    return np.asarray(truth)


def _found(truth, dets, iou=0.5):
    boxes = ops.as_boxes([d.box_xyxy for d in dets])
    if not len(boxes):
        return np.zeros(len(truth), bool)
    return ops.iou_matrix(truth, boxes).max(axis=1) >= iou


@pytest.fixture(scope="module")
def faces():
    return build_detector("centerface")  # the build's default


def test_faces_across_a_12000_x_1500_panorama_are_all_found(faces):
    canvas = _background(1500, 12000)
    xs = np.arange(150, 11700, 830)  # 14 faces, 40-120 px tall, some across tile borders
    heights = [40, 60, 80, 120] * 4
    ys = [80 + (i * 397) % 1200 for i in range(len(xs))]
    truth = _paste_faces(canvas, list(zip(xs, ys)), heights[:len(xs)])
    found = _found(truth, faces.detect(canvas))
    assert found.all(), f"missed faces {truth[~found].round().tolist()}"


def test_faces_down_a_tall_image_are_all_found(faces):
    canvas = _background(9000, 1000)
    ys = np.arange(100, 8700, 700)
    heights = [36, 50, 70, 100] * 4
    xs = [60 + (i * 331) % 800 for i in range(len(ys))]
    truth = _paste_faces(canvas, list(zip(xs, ys)), heights[:len(ys)])
    found = _found(truth, faces.detect(canvas))
    assert found.all(), f"missed faces {truth[~found].round().tolist()}"


def test_a_face_across_a_tile_border_is_anonymized_whole(faces):
    """Small and large faces placed across level-0 tile borders: one box each, covering the whole face (a cut
    half never wins the merge)."""
    canvas = _background(1500, 12000)
    [p] = faces.passes
    wins = [w for w in faces.windows(12000, 1500, p) if w.level == 0]
    borders = [w.x1 for w in wins[:-1]]  # right edges of the working-scale tiles
    truth = _paste_faces(canvas, [(borders[0] - 30, 400), (borders[1] - 200, 300), (borders[2] - 350, 200)],
                         [60, 400, 700])
    dets = faces.detect(canvas)
    found = _found(truth, dets, iou=0.6)
    assert found.all(), (truth.round().tolist(), [d.box_xyxy for d in dets if d.score > 0.3])


def test_ordinary_photos_keep_the_single_pass(faces):
    [p] = faces.passes
    single = dataclasses.replace(p, tiling=None)
    image = astronaut()
    for shape in ((1000, 1500), (1500, 1000), (1500, 1500)):
        canvas = cv2.resize(image, shape[::-1])
        assert faces.windows(shape[1], shape[0], p) is None
        a = faces.detect(canvas)
        faces.passes = (single,)
        try:
            b = faces.detect(canvas)
        finally:
            faces.passes = (p,)
        assert a == b


def _plate(canvas, x, y, height, text):
    """A synthetic white plate with black characters, ``height`` px tall and 4 x as wide; returns its box."""
    w = 4 * height
    cv2.rectangle(canvas, (x, y), (x + w, y + height), (255, 255, 255), -1)
    cv2.rectangle(canvas, (x, y), (x + w, y + height), (0, 0, 0), max(1, height // 25))
    scale = height / 50
    cv2.putText(canvas, text, (x + int(12 * scale), y + int(38 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (0, 0, 0), max(1, round(3 * scale)))
    return (x, y, x + w, y + height)


@pytest.mark.parametrize("name", ["plates", "pptext", "clpdet:threshold=0.05"])
def test_plates_along_a_panorama_are_found_as_in_ordinary_photos(name):
    """Plates 30-50 px tall, one per 1500 px of panorama (the plates detector keeps one unconfirmed text line per
    ordinary photo's worth of pixels): each one found alone in an ordinary 1280 x 853 photo (the plate detectors'
    reference size) is found in the panorama. (clp_det scores these synthetic plates low: a low threshold here.)"""
    canvas = np.full((1500, 12000, 3), 120, np.uint8)
    canvas[:, :, 2] = 140
    truth = []
    for i, x in enumerate(range(300, 11500, 1500)):
        y = 150 + (i * 433) % 800
        truth.append(_plate(canvas, x, y, (30, 40, 50)[i % 3], "AB 12%d CD" % i))
    truth = np.asarray(truth, np.float64)
    det = build_detector(name)
    in_panorama = _found(truth, det.detect(canvas), iou=0.3)
    alone = []
    for box in truth:
        x0 = int(min(12000 - 1280, max(0, box[0] - 500)))
        y0 = int(min(1500 - 853, max(0, box[1] - 400)))
        photo = np.ascontiguousarray(canvas[y0:y0 + 853, x0:x0 + 1280])
        alone.append(_found((box - [x0, y0, x0, y0])[None], det.detect(photo), iou=0.3)[0])
    alone = np.asarray(alone)
    assert alone.sum() >= (8 if name in ("plates", "pptext") else 4)
    assert in_panorama[alone].all(), f"{name}: missed plates {truth[alone & ~in_panorama].tolist()}"
