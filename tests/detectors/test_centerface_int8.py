"""centerface:precision=int8 (the default) — quantized in process from the shipped fp32 weights, deterministic, still
finds faces."""
import hashlib

import numpy as np
import pytest

from veilset.detectors import ops
from veilset.detectors.centerface import _dynamic_model_bytes, default_model_path
from veilset.detectors.quantize import quantize_centerface
from veilset.detectors.registry import build_detector
from tests import imagegen


def test_quantization_is_deterministic():
    fp32 = _dynamic_model_bytes(default_model_path())
    a, b = quantize_centerface(fp32), quantize_centerface(fp32)
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
    assert ident["int8_sha256"] == hashlib.sha256(quantize_centerface(_dynamic_model_bytes(default_model_path()))).hexdigest()


def test_bad_precision_names_the_value():
    with pytest.raises(ValueError, match="fp16"):
        build_detector("centerface:precision=fp16")


def test_int8_is_the_default_precision_and_fp32_runs_the_shipped_weights():
    from veilset.detectors.centerface import DEFAULT_PRECISION

    assert DEFAULT_PRECISION == "int8" and build_detector("centerface").identity()["precision"] == "int8"
    assert build_detector("centerface:precision=fp32").identity()["precision"] == "fp32"


def test_int8_refuses_a_model_file_that_is_already_quantized(tmp_path):
    quantized = tmp_path / "cf_int8.onnx"
    quantized.write_bytes(quantize_centerface(_dynamic_model_bytes(default_model_path())))
    with pytest.raises(ValueError, match="already quantized.*precision=fp32"):
        build_detector(f"centerface:model={quantized}")
    as_given = build_detector(f"centerface:precision=fp32,model={quantized}")  # runs the file unchanged
    assert [d for d in as_given.detect(imagegen.astronaut()) if d.score > 0.5]
