"""centerface:precision=int8 (an option; fp32 is the default) — quantized in process from the shipped fp32 weights, deterministic, still
finds faces."""
import hashlib

import numpy as np
import pytest
from PIL import Image

from veilset.detectors import ops
from veilset.detectors.centerface import INPUT_NAME, _dynamic_model_bytes, default_model_path
from veilset.detectors.quantize import quantize_centerface
from veilset.detectors.package_photos import PACKAGE_PHOTOS, photo_path
from veilset.detectors.registry import build_detector
from tests import imagegen
from tests.detectors.kernels import confident


def test_quantization_is_deterministic():
    fp32 = _dynamic_model_bytes(default_model_path())
    a, b = quantize_centerface(fp32, INPUT_NAME), quantize_centerface(fp32, INPUT_NAME)
    assert a == b and len(a) < len(fp32) / 2  # int8 weights: well under half the fp32 size


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    from veilset.detectors import centerface

    monkeypatch.setenv("VEILSET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(centerface, "_INT8_CACHE", {})


def test_int8_model_is_cached_per_machine(tmp_path):
    from veilset.detectors import centerface

    first = build_detector("centerface:precision=int8").identity()["int8_sha256"]
    [cached] = list((tmp_path / "cache").iterdir())
    assert cached.name.startswith("centerface-int8-") and hashlib.sha256(cached.read_bytes()).hexdigest() == first
    centerface._INT8_CACHE.clear()  # a new process reads the file instead of quantizing again: plant a marker
    planted = _dynamic_model_bytes(default_model_path())  # a valid model with another hash
    cached.write_bytes(planted)
    assert build_detector("centerface:precision=int8").identity()["int8_sha256"] == hashlib.sha256(planted).hexdigest()


def test_int8_detector_finds_the_face_where_fp32_does_and_records_its_model():
    int8 = build_detector("centerface:precision=int8")
    fp32 = build_detector("centerface:precision=fp32")
    image = imagegen.astronaut()
    [face8] = [d for d in int8.detect(image) if d.score > 0.5]
    [face32] = [d for d in fp32.detect(image) if d.score > 0.5]
    overlap = ops.iou_matrix(np.array([face8.box_xyxy]), np.array([face32.box_xyxy]))[0, 0]
    assert overlap > 0.8
    ident = int8.identity()
    assert ident["precision"] == "int8" and ident["weights_sha256"] == fp32.identity()["weights_sha256"]
    assert len(ident["int8_sha256"]) == 64 and "int8_sha256" not in fp32.identity()
    assert ident["int8_sha256"] == hashlib.sha256(quantize_centerface(_dynamic_model_bytes(default_model_path()), INPUT_NAME)).hexdigest()


def test_bad_precision_names_the_value():
    with pytest.raises(ValueError, match="fp16"):
        build_detector("centerface:precision=fp16")


def test_fp32_is_the_default_precision_and_int8_an_option():
    """The privacy default is the shipped weights unchanged (int8 found fewer faces with NMS IoU 0.3; README)."""
    from veilset.detectors.centerface import DEFAULT_PRECISION

    assert DEFAULT_PRECISION == "fp32" and build_detector("centerface").identity()["precision"] == "fp32"
    assert "int8_sha256" not in build_detector("centerface").identity()
    assert build_detector("centerface:precision=int8").identity()["precision"] == "int8"


def test_int8_refuses_a_model_file_that_is_already_quantized(tmp_path):
    quantized = tmp_path / "cf_int8.onnx"
    quantized.write_bytes(quantize_centerface(_dynamic_model_bytes(default_model_path()), INPUT_NAME))
    with pytest.raises(ValueError, match="already quantized.*precision=fp32"):
        build_detector(f"centerface:precision=int8,model={quantized}")
    as_given = build_detector(f"centerface:model={quantized}")  # the default (fp32) runs the file unchanged
    assert [d for d in as_given.detect(imagegen.astronaut()) if d.score > 0.5]


# Measured on the package photos (native size and 2x, this file's test): every confident face agrees; the largest
# score gap is 0.26 (Grace Hopper upscaled 2x: int8 0.60, fp32 0.86). With merge=vote (each box the score-weighted
# mean of its peaks) the boxes agree at IoU >= 0.95; with NMS (the default: each box is one peak) a shift of the
# winning peak moves the box by a few pixels (IoU 0.89 on that face). Below ~0.3 both precisions report low-score
# background peaks that do not match each other (quantization noise, on any CPU): not compared.
AGREE_IOU = {"vote": 0.9, "nms": 0.85}
AGREE_SCORE = 0.3


@pytest.mark.parametrize("merge", sorted(AGREE_IOU))
@pytest.mark.parametrize("name", sorted(PACKAGE_PHOTOS))
def test_int8_and_fp32_agree_on_every_confident_face(name, merge):
    """Both ways: each confident detection of either precision has a partner in the other one."""
    rgb = np.asarray(Image.open(photo_path(name)).convert("RGB"))
    int8 = build_detector(f"centerface:precision=int8,merge={merge}")
    fp32 = build_detector(f"centerface:precision=fp32,merge={merge}")
    for image in (rgb, np.asarray(Image.fromarray(rgb).resize((rgb.shape[1] * 2, rgb.shape[0] * 2)))):
        a, b = int8.detect(image), fp32.detect(image)
        for mine, theirs in ((a, b), (b, a)):
            for d in confident(mine):
                partners = [o for o in theirs if _iou(d.box_xyxy, o.box_xyxy) >= AGREE_IOU[merge]]
                assert partners, f"{name}: {d} has no partner at IoU >= {AGREE_IOU[merge]} in {theirs}"
                assert min(abs(d.score - o.score) for o in partners) <= AGREE_SCORE


def _iou(a, b):
    return float(ops.iou_matrix(np.array([a]), np.array([b]))[0, 0])
