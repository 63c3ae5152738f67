"""Stock ``SamAutomaticMaskGenerator`` vs ours (``segmentation.amg``): wall time and equality of the masks.

Same model (seeded random weights, see ``segmentation.sam.random_sam``), same settings, same image, same
process, alternating stock/ours per repeat; the best of ``--repeat`` runs is reported. Example (CPU)::

    python benchmarks/amg.py --sizes 480x720,960x1440 --threads 1

GPU (random vit_b weights)::

    python benchmarks/amg.py --model vit_b --device cuda --sizes 1500x2250 --preset sa1b
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        h, _, w = item.lower().partition("x")
        try:
            out.append((int(h), int(w)))
        except ValueError:
            raise SystemExit(f"amg.py: --sizes: expected HxW[,HxW...], got {item!r}") from None
    return out


def _same(a, b) -> bool:
    """Equal outputs; NaN == NaN (stability 0/0 is kept when stability_score_thresh=0) and 0 == 0.0 (the stock
    code turns crop boxes into floats when a crop keeps no mask)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True
    return a == b


def _image(h: int, w: int) -> np.ndarray:
    import cv2
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="480x720,960x1440", help="image sizes HxW, comma-separated")
    ap.add_argument("--model", default="vit_tiny", help="vit_tiny (default), vit_b, vit_l, vit_h (random weights)")
    ap.add_argument("--img-size", type=int, default=1024, help="vit_tiny input size (SAM: 1024)")
    ap.add_argument("--preset", default="sa1b", help="sa1b or default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a generator setting, e.g. --set points_per_side=16 (repeatable)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-stock", action="store_true", help="time ours only")
    args = ap.parse_args(argv)

    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from veilset.segmentation.amg import FastSamAutomaticMaskGenerator
    from veilset.segmentation.sam import PRESETS, random_sam
    from dataclasses import replace
    from veilset.segmentation.sam import SETTING_ARGS

    torch.set_num_threads(args.threads)
    if args.preset not in PRESETS:
        raise SystemExit(f"amg.py: --preset: expected one of {sorted(PRESETS)}, got {args.preset!r}")
    overrides = dict(item.partition("=")[::2] for item in args.set)
    settings = replace(PRESETS[args.preset], **SETTING_ARGS.parse_given(overrides, "sam"))
    kwargs = settings.library_kwargs()
    model = random_sam(args.model, args.seed, args.img_size if args.model == "vit_tiny" else None)
    model = model.to(args.device)

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    print(f"model={args.model} img_size={model.image_encoder.img_size} device={args.device} "
          f"threads={args.threads} torch={torch.__version__}")
    print("settings: " + ", ".join(f"{k}={v}" for k, v in kwargs.items()))
    print(f"{'size':>11} {'masks stock':>11} {'masks ours':>10} {'identical':>9} {'stock s':>8} {'ours s':>8} "
          f"{'ratio':>6}")
    stock = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **kwargs)
    ours = FastSamAutomaticMaskGenerator(model, **kwargs)
    for h, w in _parse_sizes(args.sizes):
        image = _image(h, w)
        t_stock, t_ours = [], []
        a = b = None
        for _ in range(args.repeat):
            if not args.skip_stock:
                sync()
                t0 = time.perf_counter()
                a = stock.generate(image)
                sync()
                t_stock.append(time.perf_counter() - t0)
            sync()
            t0 = time.perf_counter()
            b = ours.generate(image)
            sync()
            t_ours.append(time.perf_counter() - t0)
        if args.skip_stock:
            print(f"{h:>5}x{w:<5} {'-':>11} {len(b):>10} {'-':>9} {'-':>8} {min(t_ours):>8.2f} {'-':>6}")
        else:
            print(f"{h:>5}x{w:<5} {len(a):>11} {len(b):>10} {str(_same(a, b)):>9} {min(t_stock):>8.2f} "
                  f"{min(t_ours):>8.2f} {min(t_stock) / min(t_ours):>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
