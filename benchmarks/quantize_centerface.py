"""Write the static int8 CenterFace that ``centerface:precision=int8`` builds in memory (to inspect it, check its
sha256, or run it as given elsewhere with ``centerface:model=PATH``, which runs a file unchanged at the default fp32).

    python benchmarks/quantize_centerface.py OUT.onnx [--format qoperator|qdq] [--calib-side 1024] [--full-range]

The shipped fp32 model is made shape-dynamic exactly as ``detectors.centerface`` does, converted to opset 13
(per-channel DequantizeLinear needs it), then quantized with onnxruntime's ``quantize_static`` (per-channel
**7-bit** int8 weights, uint8 activations, MinMax calibration; ``detectors/quantize.py`` explains why 7 bits:
no CPU's int8 kernel can saturate, so the outputs are the same on every x86 CPU). Calibration images are the photos
that ship inside installed packages (``veilset.detectors.package_photos``: scikit-image's astronaut, coffee,
chelsea, rocket, motorcycle and matplotlib's Grace Hopper), resized so the long side is ``--calib-side``: no
evaluation photo is used, so recall measured on ../shared/eval stays honest. Deterministic: the same inputs give
the same bytes (sha256 printed), on any CPU. ``--full-range`` writes the old 8-bit recipe, whose answers depend on
the CPU (for comparisons only). Figures: README, "Same answers on every CPU".
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

# Run as a script, Python puts benchmarks/ first on sys.path, where other scripts' names (detectors.py,
# audit.py) would shadow the project's packages: import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))



def quantize(out_path: str, fmt: str = "qoperator", calib_side: int = 1024, full_range: bool = False) -> str:
    """Write the int8 model that ``centerface:precision=int8`` builds in memory; returns its sha256."""
    from veilset.detectors.centerface import INPUT_NAME, _dynamic_model_bytes, default_model_path
    from veilset.detectors.quantize import quantize_centerface

    data = quantize_centerface(_dynamic_model_bytes(default_model_path()), INPUT_NAME, fmt, calib_side,
                               reduce_range=not full_range)
    Path(out_path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--format", choices=("qoperator", "qdq"), default="qoperator")
    ap.add_argument("--calib-side", type=int, default=1024)
    ap.add_argument("--full-range", action="store_true", help="8-bit weights (CPU-dependent answers; comparison only)")
    args = ap.parse_args(argv)
    if not 64 <= args.calib_side <= 4096:
        raise SystemExit(f"quantize: --calib-side must be in 64..4096, got {args.calib_side}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    digest = quantize(args.out, args.format, args.calib_side, args.full_range)
    print(f"{args.out}: sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
