"""Takedown cost vs a full rebuild: remove K IDs from an N-image release.

    python benchmarks/takedown_apply.py --images 5000 --remove 10 [--shards S] [--workers W] [--rebuild]

Builds a release of N small synthetic photos with ``veilset build`` (no detectors, no masks: the cheapest full
build there is, so the ratio is a conservative upper bound), mails one request with K IDs into a Maildir,
runs ``veilset takedown ingest`` and ``veilset takedown apply`` (timed), checks the result, and prints one JSON
line with the wall-clock and CPU seconds of each step (each runs as its own ``veilset`` process, imports
included) and ``apply_vs_build`` / ``apply_vs_build_cpu`` (target <= 0.05). CPU seconds are complete only with
``--workers 1`` (Beam's in-memory runner, one process): the multi-process DirectRunner's workers are not
reaped into this process's accounting, so with more workers ``build_cpu_s`` is an undercount. ``--rebuild`` also times
the alternative: a full rebuild with ``--ledger`` that skips the removed images.
"""
from __future__ import annotations

import argparse
import json
import mailbox
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from veilset.release.manifest import load_manifest  # noqa: E402
from veilset.release.index import read as read_index  # noqa: E402


def write_photos(folder: str, n: int, seed: int = 0) -> None:
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:128]
    for k in range(n):
        base = (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2) + rng.uniform(0, 255)) % 256
        img = np.stack([base, np.roll(base, k % 50, 1), 255 - base], -1)
        img = (img + rng.normal(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"p{k:05d}.jpg"), quality=85)


def timed(argv: list[str], cpu: dict[str, float] | None = None, key: str = "") -> float:
    """Run ``veilset ARGV`` in a child process; return wall seconds and record its CPU seconds (user + sys of
    the child and the workers it waited for) in ``cpu[key]``: on a shared, loaded machine CPU time is the
    steadier figure."""
    before = os.times()
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "veilset", *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    after = os.times()
    if proc.returncode != 0:
        raise SystemExit(f"veilset {' '.join(argv[:2])} failed with {proc.returncode}:\n{proc.stderr[-2000:]}")
    if cpu is not None:
        cpu[key] = round((after.children_user - before.children_user)
                         + (after.children_system - before.children_system), 2)
    return wall


def run(args: argparse.Namespace) -> dict:
    work = tempfile.mkdtemp(prefix="veilset-bench-takedown-", dir=args.workdir)
    try:
        photos, release = os.path.join(work, "photos"), os.path.join(work, "release")
        t = time.perf_counter()
        write_photos(photos, args.images)
        gen_s = time.perf_counter() - t
        build = [photos, "--workers", str(args.workers), "--formats", args.formats, "--masks", "none",
                 "--face-detector", "none", "--plate-detector", "none"]
        if args.shards:
            build += ["--shards", str(args.shards)]
        cpu: dict[str, float] = {}
        build_s = timed(["build", *build, "--output", release], cpu, "build_cpu_s")
        m = load_manifest(release)
        all_ids = sorted(r["image_id"] for e in m["index"] for r in read_index(release, e["path"]))
        victims = random.Random(args.seed).sample(all_ids, args.remove)
        md = mailbox.Maildir(os.path.join(work, "mail"), create=True)
        md.add(("From: someone@example.org\nMessage-ID: <bench@example.org>\nSubject: removal\n\n"
                + "\n".join(victims) + "\n").encode())
        ledger = os.path.join(work, "ledger.sqlite")
        ingest_s = timed(["takedown", "ingest", "--ledger", ledger, "--maildir", os.path.join(work, "mail"),
                          "--release", release])
        apply_s = timed(["takedown", "apply", "--ledger", ledger, "--release", release,
                         "--workers", str(args.workers)], cpu, "apply_cpu_s")
        m2 = load_manifest(release)
        remaining = {r["image_id"] for e in m2["index"] for r in read_index(release, e["path"])}
        assert not remaining & set(victims) and len(remaining) == len(all_ids) - len(victims)
        touched = len({s["path"].rsplit("/", 1)[1].rsplit(".", 1)[0] for s in m2["log"][-1]["shards"]})
        out = {"images": args.images, "removed": args.remove, "num_shards": m["num_shards"],
               "shards_touched": touched, "formats": args.formats, "workers": args.workers,
               "generate_s": round(gen_s, 2), "build_s": round(build_s, 2), "ingest_s": round(ingest_s, 3),
               "apply_s": round(apply_s, 3), "apply_vs_build": round(apply_s / build_s, 4), **cpu,
               "apply_vs_build_cpu": round(cpu["apply_cpu_s"] / cpu["build_cpu_s"], 4),
               "load_average_1m": round(os.getloadavg()[0], 2)}
        if args.rebuild:
            out["rebuild_with_ledger_s"] = round(timed(["build", *build, "--output", os.path.join(work, "rebuilt"),
                                                        "--ledger", ledger], cpu, "rebuild_cpu_s"), 2)
            out["rebuild_cpu_s"] = cpu["rebuild_cpu_s"]
            out["apply_vs_rebuild"] = round(apply_s / out["rebuild_with_ledger_s"], 4)
        return out
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--remove", type=int, default=10)
    p.add_argument("--shards", type=int, default=None, help="default: the build's own default")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="build workers and apply worker processes (the same for both, for a fair ratio)")
    p.add_argument("--formats", default="parquet,coco,sa1b")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rebuild", action="store_true", help="also time a full rebuild with --ledger")
    p.add_argument("--workdir", default=None, help="where the temporary release goes (default: system temp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args(argv)
    if args.images < 1 or not 1 <= args.remove <= args.images:
        p.error(f"need 1 <= --remove <= --images, got --images {args.images} --remove {args.remove}")
    return args


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(parse())))
