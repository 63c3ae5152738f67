"""Per-image cost of the pure image stages on one core: decode, resize, draft decode, anonymize, encode, strip.

    python benchmarks/image_stages.py [--width 4000] [--height 3000] [--repeat 7]

Input: skimage's astronaut upscaled to WIDTH x HEIGHT plus mild noise (so the JPEG has photo-like entropy),
saved as a q92 4:2:0 JPEG with EXIF/XMP/ICC/COM (tests/imagegen.make_jpeg_with_exif). Medians of --repeat runs.
"""
import argparse, os, statistics, sys, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
import cv2
cv2.setNumThreads(1)
import numpy as np
from PIL import Image
sys.path.insert(0, os.environ.get("VEILSET_REPO", "."))
from veilset.detectors.base import Detection
from veilset.pipeline.anonymize import anonymize
from veilset.pipeline.decode import decode_image, decode_resized, resize_shortest_side
from veilset.pipeline.encode import encode_jpeg, strip_jpeg_metadata
from tests import imagegen as g

ap = argparse.ArgumentParser()
ap.add_argument("--width", type=int, default=4000)
ap.add_argument("--height", type=int, default=3000)
ap.add_argument("--repeat", type=int, default=7)
args = ap.parse_args()
big = np.asarray(Image.fromarray(g.astronaut()).resize((args.width, args.height), Image.Resampling.BICUBIC))
big = np.clip(big + np.random.default_rng(0).normal(0, 3, big.shape), 0, 255).astype(np.uint8)
src = g.make_jpeg_with_exif(big, icc=True, quality=92)
small_clean = g.make_jpeg(np.ascontiguousarray(big[:1500, :2000]), quality=92)


def t(fn, *a, **k):
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter(); out = fn(*a, **k); times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000, out


print(f"source {args.width}x{args.height} JPEG {len(src)/1e6:.2f} MB; cv2 threads {cv2.getNumThreads()}")
ms, full = t(decode_image, src); print(f"decode_image            {ms:7.1f} ms")
ms, res = t(resize_shortest_side, full); print(f"resize_shortest_side    {ms:7.1f} ms -> {res.shape}")
ms, dr = t(decode_resized, src, draft=True); print(f"decode_resized(draft)   {ms:7.1f} ms  mean|diff| vs exact {np.abs(dr.astype(int)-res).mean():.2f}")
h, w = res.shape[:2]
dets = [Detection("face", (x, 200.0, x + 150.0, 380.0), 0.9, "b") for x in (100.0, 500.0, 900.0, 1300.0, 1700.0)]
dets += [Detection("license_plate", (x, 1200.0, x + 200.0, 1250.0), 0.9, "b") for x in (300.0, 1200.0)]
ms, (anon, _) = t(anonymize, res, dets, seed=1); print(f"anonymize 5 faces+2 pl. {ms:7.1f} ms")
ms, _ = t(anonymize, res, [], seed=1); print(f"anonymize (none)        {ms:7.1f} ms")
ms, jp = t(encode_jpeg, anon); print(f"encode_jpeg q90         {ms:7.1f} ms -> {len(jp)/1e6:.2f} MB")
ms, _ = t(strip_jpeg_metadata, small_clean); print(f"strip_jpeg_metadata     {ms:7.1f} ms (2000x1500 source)")
