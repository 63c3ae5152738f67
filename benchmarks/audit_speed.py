"""Time each audit check on a release.

    python benchmarks/audit_speed.py --release DIR [--ledger L.sqlite] [--sample N] [--repeat 3]
    python benchmarks/audit_speed.py                  # builds the package sample photos into a temp release first

Detectors are built once (as ``veilset audit`` does per run) and reused across repeats; the figures are the
median wall time per check over the repeats, plus the detector build time.
"""
from __future__ import annotations

import argparse
import os
import statistics
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", default=None)
    p.add_argument("--ledger", default=None)
    p.add_argument("--sample", type=int, default=None)
    p.add_argument("--face-detector", default=None)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
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
