import numpy as np
import pytest

from veilset.detectors import registry
from veilset.detectors.base import (Detection, DetectorSpec, check_image, option_bool, option_choice, option_float,
                                    option_int)


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
