"""Pipeline overhead: the sum of per-image stage floors, measured in-process, vs ``veilset build``'s wall time.

    python benchmarks/overhead.py [IMAGES ...] [--limit N] [--repeat 2] [--json results/overhead.json]

Floors (one process, the same library calls and defaults the build uses, models loaded once before timing):
read (file bytes + sha256), decode (``decode_image`` + ``resize_shortest_side``), detect (default face and
plate detectors), anonymize, encode (metadata-free JPEG), write (``shards.write_shard`` of all images, per
image). Pipeline: ``veilset build IMAGES --masks none --workers 1`` (one process, the same threads per model).
overhead = pipeline seconds per image / sum of floors - 1, for the whole process (interpreter start, imports,
model loading: fixed costs) and for the build's own time (the summary line: pipeline construction to manifest).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# Run as a script, Python puts benchmarks/ first on sys.path, where other scripts' names (detectors.py,
# audit.py) would shadow the project's packages: import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks import common  # noqa: E402

STAGES = ("read", "decode", "detect", "anonymize", "encode", "write")


def measure_floors(files: list[Path], scratch: Path) -> dict[str, Any]:
    """Per-stage wall and CPU seconds per image, each stage timed in isolation on every image."""
    from veilset.detectors.registry import build_detector
    from veilset.release import ids, shards
    from veilset.pipeline.anonymize import anonymize
    from veilset.pipeline.decode import decode_image, resize_shortest_side
    from veilset.pipeline.encode import encode_jpeg
    from veilset.pipeline.anonymize import seed_for_image
    from veilset.pipeline.options import BuildOptions
    from veilset.release.records import PublishedImage

    opts = BuildOptions(inputs=tuple(map(str, files)), output=str(scratch / "floors"), masks="none")
    detectors = [d for d in (build_detector(opts.face_detector), build_detector(opts.plate_detector)) if d]
    wall = {s: 0.0 for s in STAGES}
    cpu = {s: 0.0 for s in STAGES}

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall[stage] += time.perf_counter() - t
        cpu[stage] += time.process_time() - c
        return out

    if files:  # warm-up: first inference allocates the ORT arenas
        px = resize_shortest_side(decode_image(files[0].read_bytes()), opts.max_short_side)
        for d in detectors:
            d.detect(px)
    published = []
    for f in files:
        data = timed("read", lambda: f.read_bytes())
        content = timed("read", lambda: ids.sha256_hex(data))
        image_id = ids.image_id_for(content)
        pixels = timed("decode", lambda: resize_shortest_side(
            decode_image(data, max_pixels=opts.max_pixels), opts.max_short_side))
        dets = timed("detect", lambda: tuple(x for d in detectors for x in d.detect(pixels)))
        out, record = timed("anonymize", lambda: anonymize(pixels, dets, method=opts.anonymize_method,
                                                           margin=opts.margin, seed=seed_for_image(image_id)))
        jpeg = timed("encode", lambda: encode_jpeg(out, quality=opts.jpeg_quality))
        published.append(PublishedImage(image_id=image_id, content_sha256=content, width=out.shape[1],
                                        height=out.shape[0], jpeg=jpeg, sha256=ids.sha256_hex(jpeg),
                                        detections=dets, anonymization=record, masks=()))
    n_shards = opts.num_shards(len(files))
    by_shard: dict[int, list] = {}
    for p in published:
        by_shard.setdefault(ids.shard_of(p.image_id, n_shards), []).append(p)
    for shard, images in by_shard.items():
        timed("write", lambda: shards.write_shard(opts.output, shard, n_shards, opts.formats, images))
    n = max(len(files), 1)
    return {"wall_ms_per_image": {s: round(1000 * wall[s] / n, 2) for s in STAGES},
            "cpu_ms_per_image": {s: round(1000 * cpu[s] / n, 2) for s in STAGES},
            "sum_wall_ms_per_image": round(1000 * sum(wall.values()) / n, 2),
            "sum_cpu_ms_per_image": round(1000 * sum(cpu.values()) / n, 2),
            "detectors": [d.name for d in detectors]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", help="photos or folders (default: ../shared/eval photos)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=2, help="alternating floor/pipeline measurements (median)")
    ap.add_argument("--scratch", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    files = common.collect_images(args.images or common.default_photo_dirs(), args.limit)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="veilset-overhead-")).resolve()
    floors, pipes = [], []
    try:
        for i in range(args.repeat):
            shutil.rmtree(scratch, ignore_errors=True)
            scratch.mkdir(parents=True)
            floors.append(measure_floors(files, scratch))
            pipe = common.run_timed(common.veilset_cmd(
                "build", *map(str, files), "--output", str(scratch / "release"), "--masks", "none",
                "--workers", "1")).check()
            pipes.append(pipe)
            print(f"run {i + 1}/{args.repeat}: floors {floors[-1]['sum_wall_ms_per_image']:.1f} ms/img, "
                  f"pipeline {1000 * pipe.wall_s / len(files):.1f} ms/img (process), "
                  f"{1000 * (common.build_seconds(pipe.stdout) or 0) / len(files):.1f} ms/img (build)", flush=True)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    n = len(files)
    floor_ms = common.median([f["sum_wall_ms_per_image"] for f in floors])
    proc_ms = common.median([1000 * p.wall_s / n for p in pipes])
    build_ms = common.median([1000 * (common.build_seconds(p.stdout) or float("nan")) / n for p in pipes])
    result = {
        "benchmark": "overhead", "machine": common.machine(), "photos": n,
        "floors": floors[-1], "floor_sum_ms_per_image_runs": [f["sum_wall_ms_per_image"] for f in floors],
        "pipeline_process_ms_per_image_runs": [round(1000 * p.wall_s / n, 2) for p in pipes],
        "pipeline_build_ms_per_image_runs": [round(1000 * (common.build_seconds(p.stdout) or 0) / n, 2)
                                             for p in pipes],
        "pipeline_cmd": pipes[0].summary()["cmd"].replace(" ".join(map(str, files)), "IMAGES..."),
        "overhead_process": round(proc_ms / floor_ms - 1, 3),
        "overhead_build": round(build_ms / floor_ms - 1, 3),
        "load_before": [p.load_before for p in pipes],
    }
    common.write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
