"""Peak memory vs dataset size: ``veilset build`` on N small synthetic images for several N; flat is the goal.

    python benchmarks/memory.py [--sizes 1000,10000] [--workers 2] [--side 64] [--json results/memory.json]

Each image is a distinct (seeded) noise-and-gradient JPEG of SIDE x 3/4 SIDE pixels, so every one gets its own
ID. Detectors and masks are off (``none``) to keep it fast: this measures the pipeline's own memory (shuffles,
side inputs, shard writing), not the models'. Peak RSS is the sampled maximum of the SUM over the whole process
tree (the CLI and every DirectRunner worker process), plus the largest single process.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

# Run as a script, Python puts benchmarks/ first on sys.path, where other scripts' names (detectors.py,
# audit.py) would shadow the project's packages: import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks import common  # noqa: E402


def write_synthetic(folder: Path, n: int, side: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    h, w = max(8, side * 3 // 4), side
    ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    for i in range(n):
        rng = np.random.default_rng(i)
        px = np.clip(ramp * rng.random(3, dtype=np.float32) + rng.normal(0, 40, (h, w, 3)), 0, 255)
        Image.fromarray(px.astype(np.uint8)).save(folder / f"img_{i:07d}.jpg", quality=85)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000", help="comma-separated image counts")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--side", type=int, default=64, help="image width in pixels (height = 3/4)")
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"benchmark: --sizes must be comma-separated integers, got {args.sizes!r}") from None
    if not sizes or min(sizes) < 1:
        raise SystemExit(f"benchmark: --sizes needs positive counts, got {args.sizes!r}")
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="veilset-memory-")).resolve()
    runs = []
    try:
        for n in sizes:
            photos = scratch / f"photos_{n}"
            shutil.rmtree(photos, ignore_errors=True)
            write_synthetic(photos, n, args.side)
            out = scratch / f"release_{n}"
            shutil.rmtree(out, ignore_errors=True)
            sampler = common.TreeSampler()
            t = common.run_timed(common.veilset_cmd(
                "build", str(photos), "--output", str(out), "--workers", str(args.workers),
                "--face-detector", "none", "--plate-detector", "none", "--masks", "none"),
                sampler=sampler).check()
            from veilset.release.manifest import load_manifest

            counts = load_manifest(str(out))["counts"]
            if counts["published"] != n:
                raise SystemExit(f"benchmark: expected {n} published images, got {counts}")
            runs.append({"images": n, "peak_tree_rss_mb": round(t.peak_tree_rss_mb, 1),
                         "peak_single_rss_mb": round(sampler.peak_single / 2**20, 1),
                         "peak_processes": t.peak_processes, "wall_s": round(t.wall_s, 1),
                         "images_per_s": round(n / t.wall_s, 1), "load_before": t.load_before,
                         "cmd": t.summary()["cmd"]})
            print(f"{n} images: peak tree RSS {t.peak_tree_rss_mb:.0f} MB over {t.peak_processes} processes, "
                  f"largest process {sampler.peak_single / 2**20:.0f} MB, {t.wall_s:.1f} s", flush=True)
            shutil.rmtree(photos, ignore_errors=True)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    base = runs[0]["peak_tree_rss_mb"]
    result = {"benchmark": "memory", "machine": common.machine(), "workers": args.workers, "side": args.side,
              "runs": runs, "growth_largest_vs_smallest": round(runs[-1]["peak_tree_rss_mb"] / base - 1, 3)}
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
