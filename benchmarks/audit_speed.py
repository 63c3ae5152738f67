"""Time each audit check on a release, or a full audit against the build of the same photos.

    python benchmarks/audit_speed.py --release DIR [--ledger L.sqlite] [--sample N] [--repeat 3]
    python benchmarks/audit_speed.py                  # builds the package sample photos into a temp release first
    python benchmarks/audit_speed.py --vs-build PHOTOS [--workers 2] [--keep DIR]

Per check: detectors are built once (as ``veilset audit`` does per run) and reused across repeats, in this process
(injected detectors do not go to worker processes); the figures are the median wall time per check over the
repeats, plus the detector build time.

``--vs-build``: ``veilset build PHOTOS --workers N`` (default formats, detectors and masks), then at once
``veilset audit --release OUT --workers N`` (every check), each a child process; wall and CPU seconds (user +
system of the child and its worker processes) of each and their ratio (audit / build: the goal is <= 1).
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from veilset.api import audit  # noqa: E402
from veilset.audit import findings as F  # noqa: E402
from veilset.audit.anonymization import build_production_detectors  # noqa: E402
from veilset.audit.release import Release  # noqa: E402
from veilset.audit.residual import build_residual_detector  # noqa: E402


def _sample_release(folder: str) -> str:
    from veilset.cli import main
    from veilset.pipeline.samples import write_samples

    photos = os.path.join(folder, "photos")
    write_samples(photos)
    out = os.path.join(folder, "release")
    if main(["build", photos, "--output", out, "--workers", "1", "--formats", "parquet,coco,sa1b"]) != 0:
        raise SystemExit("sample build failed")
    return out


def _timed(cmd: list[str]) -> tuple[int, float, float]:
    """(exit status, wall s, CPU s of the child and its waited-for descendants)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd).returncode
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return rc, wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def vs_build(photos: str, workers: int, keep: str | None) -> int:
    veilset = [sys.executable, "-m", "veilset"]
    with tempfile.TemporaryDirectory() as tmp:
        out = keep or os.path.join(tmp, "release")
        rc, build_wall, build_cpu = _timed([*veilset, "build", photos, "--output", out, "--workers", str(workers),
                                            "--progress", "none"])
        if rc != 0:
            raise SystemExit(f"build failed ({rc})")
        rc, audit_wall, audit_cpu = _timed([*veilset, "audit", "--release", out, "--workers", str(workers),
                                            "--report", os.path.join(tmp, "report"), "--progress", "none"])
        if rc not in (0, 1):
            raise SystemExit(f"audit failed ({rc})")
        images = Release(out).manifest.get("counts", {}).get("published")
        print(f"{images} images, --workers {workers}, cpu_count={os.cpu_count()}; audit exit {rc}")
        print(f"build {build_wall:8.1f} s wall {build_cpu:8.1f} s CPU")
        print(f"audit {audit_wall:8.1f} s wall {audit_cpu:8.1f} s CPU")
        print(f"audit / build: wall {audit_wall / build_wall:.2f}, CPU {audit_cpu / build_cpu:.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", default=None)
    p.add_argument("--ledger", default=None)
    p.add_argument("--sample", type=int, default=None)
    p.add_argument("--face-detector", default=None)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--vs-build", default=None, metavar="PHOTOS", help="time a build of PHOTOS, then its audit")
    p.add_argument("--workers", type=int, default=2, help="--vs-build: build and audit worker processes")
    p.add_argument("--keep", default=None, metavar="DIR", help="--vs-build: build into DIR (kept) instead of a temp")
    args = p.parse_args(argv)
    if args.vs_build:
        return vs_build(args.vs_build, args.workers, args.keep)
    if args.repeat < 1:
        raise SystemExit(f"--repeat must be >= 1, got {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp:
        release = args.release or _sample_release(tmp)
        t0 = time.perf_counter()
        production, problems = build_production_detectors(Release(release))
        residual = build_residual_detector(args.face_detector)
        build_s = time.perf_counter() - t0
        if problems:
            print("warning:", *problems, sep="\n  ")
        times: dict[str, list[float]] = {c: [] for c in F.CHECKS}
        for _ in range(args.repeat):
            report = audit(release, ledger=args.ledger, sample=args.sample, production=production,
                               residual=residual)
            for r in report.results:
                times[r.check].append(r.stats["seconds"])
        images = report.result(F.INTEGRITY).stats.get("images", 0)
        print(f"release {release}: {images} images, formats {','.join(Release(release).formats)}; "
              f"passed={report.passed}; {args.repeat} repeats; cpu_count={os.cpu_count()}")
        print(f"{'detector build':<16} {build_s:8.2f} s  (production: "
              f"{', '.join(d.spec for d in production) or 'none'}; residual: {residual.spec})")
        for check, values in times.items():
            med = statistics.median(values)
            per = f"{med / images * 1000:8.1f} ms/image" if images else ""
            print(f"{check:<16} {med:8.2f} s  {per}  (min {min(values):.2f}, max {max(values):.2f})")
        total = sum(statistics.median(v) for v in times.values())
        print(f"{'total':<16} {total:8.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
