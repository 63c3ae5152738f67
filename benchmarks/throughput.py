"""Throughput of ``veilset build``, anonymize-only (``--masks none``, default detectors), vs ``--workers``.

    python benchmarks/throughput.py [IMAGES ...] [--workers 1,2] [--repeat 2] [--limit N]
                                    [--extra "--face-detector centerface:threshold=0.2"] [--json results/throughput.json]

images/s = published images / whole-process wall time (interpreter start, model loading and Beam start-up
included: what a user waits for) and / the build's own time (the summary line). Scaling efficiency of W workers
= (images/s with W) / (images/s with the fewest workers measured x W / that W). Runs alternate between worker
counts so that load from other processes on a shared machine spreads over both; the median is reported.
"""
from __future__ import annotations

import argparse
import shlex
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", help="photos or folders (default: ../shared/eval photos)")
    ap.add_argument("--workers", default="1,2", help="comma-separated --workers values")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--extra", default="", help="more veilset build options (one shell-quoted string)")
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        raise SystemExit(f"benchmark: --workers must be comma-separated integers, got {args.workers!r}") from None
    if not workers or min(workers) < 1 or args.repeat < 1:
        raise SystemExit(f"benchmark: need --workers >= 1 and --repeat >= 1, got {args.workers!r}, {args.repeat}")
    files = common.collect_images(args.images or common.default_photo_dirs(), args.limit)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="veilset-throughput-")).resolve()
    runs: dict[int, list[common.Timed]] = {w: [] for w in workers}
    published = 0
    try:
        src = common.flat_copy(files, scratch / "photos")
        for i in range(args.repeat):
            for w in workers:
                out = scratch / "release"
                shutil.rmtree(out, ignore_errors=True)
                t = common.run_timed(common.veilset_cmd("build", str(src), "--output", str(out), "--masks", "none",
                                                        "--workers", str(w), *shlex.split(args.extra))).check()
                runs[w].append(t)
                from veilset.release.manifest import load_manifest

                published = load_manifest(str(out))["counts"]["published"]
                print(f"run {i + 1}/{args.repeat} workers {w}: {t.wall_s:.1f} s, {published / t.wall_s:.2f} images/s "
                      f"(load before {t.load_before:.1f})", flush=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for w in workers:
        wall = common.median([t.wall_s for t in runs[w]])
        build = common.median([common.build_seconds(t.stdout) or float("nan") for t in runs[w]])
        rows.append({"workers": w, "wall_s": [round(t.wall_s, 2) for t in runs[w]],
                     "images_per_s": round(published / wall, 3), "build_images_per_s": round(published / build, 3),
                     "peak_tree_rss_mb": round(max(t.peak_tree_rss_mb for t in runs[w]), 1),
                     "load_before": [round(t.load_before, 2) for t in runs[w]],
                     "cmd": runs[w][0].summary()["cmd"]})
    base = rows[0]
    for r in rows:
        for key in ("images_per_s", "build_images_per_s"):
            r[key.replace("images_per_s", "scaling_efficiency")] = round(
                r[key] / (base[key] * r["workers"] / base["workers"]), 3)
    result = {"benchmark": "throughput", "machine": common.machine(), "photos": len(files),
              "published": published, "extra": args.extra, "runs": rows}
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
