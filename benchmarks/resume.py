"""Resume: what a rerun of an interrupted build costs, and whether it gives the same release.

    python benchmarks/resume.py [IMAGES ...] [--images 500] [--kill-at 0.8] [--workers 2] [--json out.json]

Inputs: ``--images`` distinct photos made from IMAGES (default: the real photos of ../shared/eval), each photo
also mirrored and cropped when more are needed (real content, distinct bytes); written to a scratch folder.
Three runs of the same command, ``veilset build INPUTS --output DIR --workers N`` (default detectors and masks):
1. a full build (its wall time is the reference);
2. the same build killed (SIGKILL to its whole process group) once ``--kill-at`` of the images it publishes are
   staged (``DIR/.staging/<key>/sa_*.pkl``);
3. the same command again: it resumes. Reported: its wall and CPU time (the process tree's, from rusage) as
   fractions of the full build's (target: <= 0.30 at --kill-at 0.8), and whether its release equals the full
   build's (every file byte for byte, the manifest without its ``created`` time; not the folder marker
   ``.veilset-release.json``, which holds each folder's own uuid).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks import common  # noqa: E402


def make_inputs(files: list[Path], n: int, dest: Path) -> int:
    """``n`` distinct photos: each source as is, then mirrored, then centre-cropped to 90 %."""
    from PIL import Image, ImageOps

    dest.mkdir(parents=True)
    variants = [lambda im: im, ImageOps.mirror, lambda im: im.crop(_crop(im.size, 0.9)),
                lambda im: ImageOps.mirror(im.crop(_crop(im.size, 0.8)))]
    made = 0
    for v, variant in enumerate(variants):
        for f in files:
            if made == n:
                return made
            with Image.open(f) as im:
                variant(ImageOps.exif_transpose(im).convert("RGB")).save(dest / f"{v}_{f.stem}.jpg", quality=92)
            made += 1
    return made


def _crop(size: tuple[int, int], keep: float) -> tuple[int, int, int, int]:
    w, h = size
    dx, dy = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
    return dx, dy, w - dx, h - dy


def build(inputs: Path, out: Path, workers: int, kill_when: int | None = None) -> dict[str, Any]:
    """One ``veilset build``; with ``kill_when``, SIGKILL its process group once that many records are staged."""
    # publish-all: the mirrored and cropped variants are near-copies of their photo; grouping them would publish
    # fewer images than were staged (the kill point counts staged records), the work done is the same
    cmd = common.veilset_cmd("build", str(inputs), "--output", str(out), "--workers", str(workers),
                             "--progress", "none", "--near-duplicates", "publish-all")
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.Popen(cmd, cwd=str(common.REPO), env=common.child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill_when is None:
        out_text, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"build failed ({proc.returncode}):\n{err[-3000:]}")
        c1 = os.times()
        cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
        return {"seconds": round(time.perf_counter() - t0, 2), "cpu_seconds": round(cpu, 2),
                "summary": out_text.strip().splitlines()}
    while proc.poll() is None and staged(out) < kill_when:
        time.sleep(0.2)
    n = staged(out)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return {"seconds": round(time.perf_counter() - t0, 2), "staged_when_killed": n}


def staged(out: Path) -> int:
    return sum(1 for _ in out.glob(".staging/*/sa_*.pkl"))


def tree(root: Path) -> dict[str, str]:
    """Every file of the release -> sha256; not the folder's marker (each folder's own identity: uuid, time)."""
    out = {}
    for f in sorted(p for p in root.rglob("*") if p.is_file() and p.name != ".veilset-release.json"):
        data = f.read_bytes()
        if f.name == "manifest.json":
            doc = json.loads(data)
            doc.pop("created")
            data = json.dumps(doc, sort_keys=True).encode()
        out[str(f.relative_to(root))] = hashlib.sha256(data).hexdigest()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", nargs="*", default=None, help="photos or folders (default: ../shared/eval's)")
    ap.add_argument("--images", dest="count", type=int, default=500, help="distinct inputs (default 500)")
    ap.add_argument("--kill-at", type=float, default=0.8, help="fraction of published images staged at the kill")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    args = ap.parse_args()
    files = common.collect_images(args.images or common.default_photo_dirs())
    scratch = Path(tempfile.mkdtemp(prefix="veilset-resume-"))
    print(f"scratch: {scratch}", file=sys.stderr)
    try:
        inputs = scratch / "in"
        n = make_inputs(files, args.count, inputs)
        full = build(inputs, scratch / "full", args.workers)
        published = json.loads((scratch / "full" / "manifest.json").read_text())["counts"]["published"]
        killed = build(inputs, scratch / "resumed", args.workers, kill_when=int(published * args.kill_at))
        rerun = build(inputs, scratch / "resumed", args.workers)
        a, b = tree(scratch / "full"), tree(scratch / "resumed")
        same = a == b
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        result = {"machine": common.machine(), "inputs": n, "published": published, "workers": args.workers,
                  "full_build_s": full["seconds"], "killed": killed, "rerun_s": rerun["seconds"],
                  "full_build_cpu_s": full["cpu_seconds"], "rerun_cpu_s": rerun["cpu_seconds"],
                  "rerun_fraction_of_full": round(rerun["seconds"] / full["seconds"], 3),
                  "rerun_cpu_fraction_of_full": round(rerun["cpu_seconds"] / full["cpu_seconds"], 3),
                  "identical_release": same, "differing_files": differ[:20], "rerun_summary": rerun["summary"]}
        common.write_json(args.json, result)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
