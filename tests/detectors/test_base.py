import numpy as np
import pytest

from veilset.detectors import registry
from veilset.detectors.base import (Detection, DetectorSpec, MultiPassDetector, Pass, check_image, option_bool,
                                    option_choice, option_float, option_int)


def test_spec_parse_and_str():
    s = DetectorSpec.parse("centerface:threshold=0.3, preset=crowd")
    assert s.name == "centerface" and dict(s.kwargs) == {"threshold": "0.3", "preset": "crowd"}
    assert str(s) == "centerface:threshold=0.3,preset=crowd"
    assert DetectorSpec.parse("plates").kwargs == ()
    with pytest.raises(ValueError, match="threshold"):
        DetectorSpec.parse("centerface:threshold")


def test_option_parsers_name_the_bad_value():
    assert option_float("threshold", "0.25", 0, 1) == 0.25
    with pytest.raises(ValueError, match=r"threshold.*'1.5'"):
        option_float("threshold", "1.5", 0, 1)
    with pytest.raises(ValueError, match=r"threshold.*'abc'"):
        option_float("threshold", "abc", 0, 1)
    with pytest.raises(ValueError, match="nan"):
        option_float("x", "nan")
    assert option_int("threads", "2", 0, 8) == 2
    with pytest.raises(ValueError, match="'2.5'"):
        option_int("threads", "2.5", 0, 8)
    assert option_bool("flag", "yes") is True and option_bool("flag", "0") is False
    with pytest.raises(ValueError, match="'maybe'"):
        option_bool("flag", "maybe")
    with pytest.raises(ValueError, match="'big'"):
        option_choice("preset", "big", ("default", "crowd"))


def test_registry_lists_and_rejects():
    names = registry.available()
    assert {"centerface", "clpdet", "pptext", "plates"} <= set(names)
    assert registry.build_detector("none") is None
    with pytest.raises(ValueError, match="'nosuch'.*available"):
        registry.build_detector("nosuch")


@pytest.mark.parametrize("spec, bad", [
    ("centerface:threshold=2", "'2'"),
    ("centerface:preset=huge", "'huge'"),
    ("centerface:max_side=abc", "'abc'"),
    ("centerface:margin=-1", "'-1'"),
    ("centerface:model=/nonexistent.onnx", "/nonexistent.onnx"),
    ("clpdet:threshold=x", "'x'"),
    ("pptext:max_side=10", "'10'"),
    ("plates:max_text=-1", "'-1'"),
    ("plates:clp_threshold=1.1", "'1.1'"),
])
def test_bad_arguments_are_rejected_with_the_value(spec, bad):
    with pytest.raises(ValueError, match=bad):
        registry.build_detector(spec)


def test_unknown_keyword_is_an_error():
    with pytest.raises(ValueError, match="bogus"):
        registry.build_detector("centerface:bogus=1")


def test_check_image():
    check_image(np.zeros((4, 5, 3), np.uint8))
    for bad in (np.zeros((4, 5), np.uint8), np.zeros((4, 5, 3), np.float32), np.zeros((0, 5, 3), np.uint8), "x"):
        with pytest.raises(ValueError, match="H x W x 3 uint8"):
            check_image(bad)


def test_detection_round_trip():
    d = Detection("face", (1.0, 2.0, 3.0, 4.0), 0.5, "centerface")
    assert Detection.from_dict(d.to_dict()) == d


class _Counting(MultiPassDetector):
    """Boxes that depend on the network input (its size and content), and a count of the inferences."""

    def __init__(self, passes, merge="nms"):
        self.passes, self.merge, self.threshold, self.calls = passes, merge, 0.0, []

    def _infer(self, image_rgb, mapping):
        self.calls.append(image_rgb.shape[:2])
        h, w = image_rgb.shape[:2]
        seed = int(image_rgb.sum()) % 997 + w
        rng = np.random.default_rng(seed)
        x0 = rng.uniform(0, w / 2, 6)
        y0 = rng.uniform(0, h / 2, 6)
        boxes = np.stack([x0, y0, x0 + rng.uniform(10, w / 2, 6), y0 + rng.uniform(10, h / 2, 6)], axis=1)
        return boxes, rng.uniform(0.05, 1.0, 6)


@pytest.mark.parametrize("merge", ["nms", "vote"])
@pytest.mark.parametrize("side, inferences", [(512, 1), (600, 1), (700, 2), (2000, 2)])
def test_passes_with_the_same_network_input_run_once_with_the_same_boxes(merge, side, inferences):
    """The audit preset's 1280- and 1600-px passes both upscale a 640-px photo 2x: one inference, and the boxes the
    two would give merged (exact copies dropped) -- on a 700-px or a 2000-px image they differ and both run."""
    from veilset.detectors import ops

    passes = (Pass(grid=1, max_side=1280, max_upscale=2.0), Pass(grid=1, max_side=1600, max_upscale=2.0))
    image = np.random.default_rng(side).integers(0, 255, (side * 3 // 4, side, 3), dtype=np.uint8)
    det = _Counting(passes, merge)
    boxes, scores = det.boxes_scores(image)
    assert len(det.calls) == inferences
    both = _Counting(passes, merge)
    expected = ops.merge_passes([both._run_pass(image, p) for p in passes], both.merge_iou, merge, 0.0)
    assert len(both.calls) == 2
    np.testing.assert_allclose(boxes, expected[0], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(scores, expected[1])


def test_a_backend_with_its_own_resize_only_skips_an_identical_pass():
    class OwnResize(_Counting):
        def _run_one(self, image_rgb, p):
            return self._infer(image_rgb, None)

    p = Pass(grid=1, max_side=1280, max_upscale=2.0)
    image = np.zeros((300, 400, 3), np.uint8)
    det = OwnResize((p, Pass(grid=1, max_side=1600, max_upscale=2.0), p))
    det.boxes_scores(image)
    assert len(det.calls) == 2
