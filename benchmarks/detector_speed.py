"""Detector speed: ms per image at a given long side (default 1500 px), one onnxruntime thread and default threads.

    python benchmarks/detector_speed.py                                   # synthetic 1500x1000 images, default detectors
    python benchmarks/detector_speed.py --images ../shared/eval/plates/images --limit 20 --detectors centerface plates
    python benchmarks/detector_speed.py --threads 1 --json

Images: photos under --images (any depth, resized so the long side is --side), else synthetic scenes built from
skimage.data photos (astronaut, coffee, chelsea) tiled to --side x 2/3 --side. Each detector is built once per
thread setting, warmed up on the first image, then timed over --repeat rounds of all images; the median per-image
time is reported (the machine is shared and noisy: compare figures from the same run only).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

# Run as a script, Python puts benchmarks/ first on sys.path, where this file's own name would shadow the
# ``detectors`` package: drop that entry and import from the repository root.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

DEFAULT_DETECTORS = ("centerface", "clpdet", "pptext", "plates")


def synthetic_images(side: int, count: int) -> list[np.ndarray]:
    import cv2
    import skimage.data

    photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
    w, h = side, side * 2 // 3
    out = []
    for k in range(count):
        canvas = np.zeros((h, w, 3), np.uint8)
        y = 0
        row = 0
        while y < h:
            x = -(row * 97 + k * 131) % 400
            while x < w:
                p = photos[(row + x // 300 + k) % len(photos)]
                ph, pw = p.shape[:2]
                x0, y0 = max(x, 0), y
                x1, y1 = min(x + pw, w), min(y + ph, h)
                canvas[y0:y1, x0:x1] = p[: y1 - y0, x0 - x : x1 - x]
                x += pw
            y += 256
            row += 1
        out.append(np.ascontiguousarray(cv2.GaussianBlur(canvas, (3, 3), 0)))
    return out


def folder_images(folder: str, side: int, limit: int) -> list[np.ndarray]:
    import cv2

    paths = []
    for root, _, files in os.walk(folder):
        paths += [os.path.join(root, f) for f in files if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    out = []
    for path in sorted(paths)[:limit]:
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        f = side / max(bgr.shape[:2])
        bgr = cv2.resize(bgr, (round(bgr.shape[1] * f), round(bgr.shape[0] * f)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    if not out:
        raise SystemExit(f"benchmarks/detector_speed.py: --images: no images under {folder!r}")
    return out


def time_detector(spec: str, images: list[np.ndarray], repeat: int) -> dict:
    from veilset.detectors.registry import build_detector

    det = build_detector(spec)
    det.detect(images[0])
    per_image = []
    cpu = []
    boxes = 0
    for _ in range(repeat):
        for img in images:
            t0, c0 = time.perf_counter(), time.process_time()
            boxes += len(det.detect(img))
            per_image.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    # cpu_ms: process CPU time per image; with threads=1 it is the one-core cost and is less disturbed by other
    # processes competing for the cores than the wall-clock figure.
    return {"spec": spec, "ms_median": 1000 * statistics.median(per_image), "cpu_ms_median": 1000 * statistics.median(cpu),
            "ms_mean": 1000 * statistics.fmean(per_image), "boxes_per_image": boxes / len(per_image),
            "runs": len(per_image)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--detectors", nargs="+", default=list(DEFAULT_DETECTORS), help="detector specs")
    ap.add_argument("--images", default=None, help="folder of photos (default: synthetic scenes)")
    ap.add_argument("--limit", type=int, default=10, help="number of images (default 10)")
    ap.add_argument("--side", type=int, default=1500, help="long side in pixels (default 1500)")
    ap.add_argument("--repeat", type=int, default=2, help="rounds over the images (default 2)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                    help="onnxruntime intra-op threads to test; 0 = default (default: 1 0)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    args = ap.parse_args(argv)
    if args.side < 32 or args.limit < 1 or args.repeat < 1:
        ap.error(f"--side >= 32, --limit >= 1, --repeat >= 1 (got {args.side}, {args.limit}, {args.repeat})")
    images = folder_images(args.images, args.side, args.limit) if args.images else synthetic_images(args.side,
                                                                                                   args.limit)
    size = f"{images[0].shape[1]}x{images[0].shape[0]}"
    for threads in args.threads:
        for spec in args.detectors:
            full = spec + ("," if ":" in spec else ":") + f"threads={threads}"
            res = time_detector(full, images, args.repeat)
            res.update({"threads": threads, "image_size": size, "images": len(images)})
            if args.json:
                print(json.dumps(res), flush=True)
            else:
                print(f"{full:<40} threads={threads or 'default':<8} {size:>10}  median {res['ms_median']:7.1f} ms"
                      f"  mean {res['ms_mean']:7.1f} ms  cpu {res['cpu_ms_median']:7.1f} ms  boxes/img {res['boxes_per_image']:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
