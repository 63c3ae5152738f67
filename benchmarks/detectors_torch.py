"""Speed of the torch detector backends (retinaface, egoblur) on CPU: milliseconds per 1500-px image.

    python benchmarks/detectors_torch.py [--size 1500] [--repeat 5] [--threads 1] [--max-sides 1280,0]
                                         [--egoblur] [--json]

RANDOM WEIGHTS, SPEED ONLY: no real weights ship with veilset, so the networks are randomly initialised and
the boxes are meaningless. Every model is saved to a temp file and loaded through the same code a user hits
(``weights=PATH``), and timed through ``detect()`` (resize, normalisation, forward, decoding, NMS, mapping).

- retinaface: the ResNet-50 of retinaface-pytorch at each ``--max-sides`` value (0 = native size).
  ``threshold=0.5`` on random weights gives thousands of candidates; decoding is capped at the 5000 best before
  NMS, the same as with real weights at a low threshold, so post-processing time is an upper bound.
- egoblur (``--egoblur``): Meta's files are not redistributable, so a STAND-IN is timed: torchvision's
  ``fasterrcnn_resnet50_fpn`` (random weights, its own 800/1333 internal resize) scripted behind EgoBlur's
  ``forward(BGR uint8 CHW) -> (boxes, labels, scores, dims)`` signature. EgoBlur's own backbone is bigger
  (ResNeXt), so treat this as a lower bound on EgoBlur's cost and an exact measure of the wrapper's.

The image is a synthetic ``size`` x ``2*size/3`` photo-like array (long side = ``--size``). Timings on a
shared machine are noisy: the median of ``--repeat`` runs after one warm-up is reported, as wall time and as
process CPU time (with ``--threads 1`` the CPU time is the steadier estimate of one idle core's wall time).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def synthetic_photo(long_side: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = (2 * long_side) // 3, long_side
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 0.3 + yy * 0.2) % 256
    img = np.stack([base, np.roll(base, 17, 1), 255 - base], -1) + rng.normal(0, 12, (h, w, 3))
    return img.clip(0, 255).astype(np.uint8)


def time_ms(fn: Callable[[], object], repeat: int) -> tuple[float, list[float], float]:
    """(median wall ms, wall ms per run, median process CPU ms). With --threads 1, CPU time is close to the
    wall time the same run would take on an idle core, so it is the steadier figure on a shared machine."""
    fn()  # warm-up (allocations, prior-box cache)
    runs, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        runs.append((time.perf_counter() - t0) * 1000.0)
        cpu.append((time.process_time() - c0) * 1000.0)
    return statistics.median(runs), runs, statistics.median(cpu)


def bench_retinaface(image: np.ndarray, max_sizes: list[int], repeat: int, tmp: str) -> list[dict]:
    import torch

    from veilset.detectors import retinaface as rf

    torch.manual_seed(0)
    path = os.path.join(tmp, "retinaface_random.pth")
    torch.save(rf.build_network().state_dict(), path)
    rows = []
    for max_size in max_sizes:
        det = rf.RetinaFaceDetector(weights=path, max_side=max_size)
        median, runs, cpu = time_ms(lambda: det.detect(image), repeat)
        rows.append({"detector": "retinaface", "weights": "random", "max_side": max_size,
                     "network_input": list(det.padded_size(*image.shape[:2])),
                     "ms_per_image": round(median, 1), "cpu_ms_per_image": round(cpu, 1),
                     "runs_ms": [round(r, 1) for r in runs]})
    return rows


class _EgoBlurStandIn:  # built lazily: torch is imported inside main()
    @staticmethod
    def build():
        import torch
        import torchvision

        class StandIn(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = torchvision.models.detection.fasterrcnn_resnet50_fpn(
                    weights=None, weights_backbone=None, num_classes=2)

            def forward(self, image: torch.Tensor):
                x = image.flip(0).float() / 255.0  # BGR uint8 -> RGB float, as a torchvision model wants
                _, out = self.model([x])
                h, w = image.shape[1], image.shape[2]
                return out[0]["boxes"], out[0]["labels"], out[0]["scores"], torch.tensor([h, w])

        return StandIn().eval()


def bench_egoblur(image: np.ndarray, repeat: int, tmp: str) -> list[dict]:
    import torch

    from veilset.detectors import egoblur as eb

    torch.manual_seed(0)
    path = os.path.join(tmp, "egoblur_standin.jit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(_EgoBlurStandIn.build()), path)
    det = eb.egoblur_face(weights=path, threshold=0.0)
    with warnings.catch_warnings():  # torchvision's scripted RCNN warns on every call
        warnings.filterwarnings("ignore", message="RCNN always returns")
        median, runs, cpu = time_ms(lambda: det.detect(image), repeat)
    return [{"detector": "egoblur_face", "weights": "random stand-in (torchvision fasterrcnn_resnet50_fpn)",
             "ms_per_image": round(median, 1), "cpu_ms_per_image": round(cpu, 1),
             "runs_ms": [round(r, 1) for r in runs]}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=1500, help="long side of the test image (default 1500)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1 = one core)")
    parser.add_argument("--max-sides", default="1280,0",
                        help="retinaface max_side values, comma-separated (0 = native size; default preset = 1280)")
    parser.add_argument("--egoblur", action="store_true", help="also time the EgoBlur stand-in (slow)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.size < 32 or args.repeat < 1 or args.threads < 1:
        raise SystemExit(f"veilset: bad --size/--repeat/--threads: {args.size}/{args.repeat}/{args.threads}")
    try:
        max_sizes = [int(v) for v in args.max_sides.split(",")]
    except ValueError:
        raise SystemExit(f"veilset: --max-sides must be integers, got {args.max_sides!r}") from None

    import torch

    torch.set_num_threads(args.threads)
    image = synthetic_photo(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench_retinaface(image, max_sizes, args.repeat, tmp)
        if args.egoblur:
            rows += bench_egoblur(image, args.repeat, tmp)
    result = {"image": list(image.shape[:2]), "threads": args.threads, "torch": torch.__version__,
              "note": "random weights: speed only", "results": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"image {image.shape[1]}x{image.shape[0]}, torch {torch.__version__}, {args.threads} thread(s), "
              "RANDOM WEIGHTS (speed only)")
        for row in rows:
            extra = f" max_side={row['max_side']} input={row['network_input']}" if "max_side" in row else ""
            print(f"  {row['detector']:<14}{extra}: {row['ms_per_image']:.1f} ms/image wall, "
                  f"{row['cpu_ms_per_image']:.1f} ms CPU (wall runs {row['runs_ms']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
