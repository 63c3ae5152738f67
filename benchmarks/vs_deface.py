"""veilset vs deface: wall time on the same photos (faces only) and face recall of both on COCO ground truth.

    python benchmarks/vs_deface.py [IMAGES ...] [--eval ../shared/eval/faces] [--face-detector SPEC]
                                   [--workers N] [--repeat 3] [--json results/vs_deface.json]

Timing: the ``deface`` CLI (its defaults: CenterFace at threshold 0.2, native resolution, blur, CPU execution
provider) on a flat copy of IMAGES (default: the photos of ../shared/eval), and ``veilset build`` on the same
copy with ``--plate-detector none --masks none`` (faces only, like deface), whole-process wall time each, the
median of ``--repeat`` alternating runs. Ratio = deface wall / veilset wall (> 1: veilset is faster).

Recall: both detectors on the COCO set of ``--eval`` through the project's matcher (``detectors.evaluate``):
deface = its own ``deface.centerface.CenterFace`` (onnxruntime, threshold 0.2, its resize-to-/32 handling) on
the same decoded images; veilset = the face detector ``veilset build`` runs (the library
default, or ``--face-detector``).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# Run as a script, Python puts benchmarks/ first on sys.path, where other scripts' names (detectors.py,
# audit.py) would shadow the project's packages: import from the repository root instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from benchmarks import common  # noqa: E402

DEFACE_THRESHOLD = 0.2  # deface's CLI default (--thresh)


def deface_executable() -> str:
    exe = shutil.which("deface", path=str(Path(sys.executable).parent)) or shutil.which("deface")
    if exe is None:
        raise SystemExit("benchmark: the deface CLI is not installed; install it with: "
                         "pip install --no-deps deface==1.5.0 imageio imageio-ffmpeg tqdm")
    try:
        import imageio_ffmpeg  # noqa: F401  (deface's CLI imports it at start-up)
    except ImportError:
        raise SystemExit("benchmark: the deface CLI needs imageio-ffmpeg: pip install imageio-ffmpeg") from None
    return exe


class DefaceDetector:
    """deface's own CenterFace (its pre/post-processing, its default threshold) behind the Detector protocol."""

    name = "deface"
    label = "face"

    def __init__(self, threshold: float = DEFACE_THRESHOLD) -> None:
        from deface.centerface import CenterFace

        self.threshold = threshold
        self._cf = CenterFace(in_shape=None, backend="onnxrt", override_execution_provider="CPUExecutionProvider")

    def identity(self) -> dict[str, Any]:
        from veilset.detectors.base import package_version

        return {"name": "deface", "package_version": package_version("deface"), "threshold": self.threshold}

    def detect(self, image_rgb):
        from veilset.detectors.base import Detection

        dets, _ = self._cf(image_rgb, threshold=self.threshold)
        return [Detection("face", tuple(float(v) for v in d[:4]), float(d[4]), "deface") for d in dets]

    def detect_batch(self, images_rgb):
        return [self.detect(im) for im in images_rgb]


def face_recall(detector: Any, eval_dir: Path) -> dict[str, Any]:
    """Recall (IoU >= 0.5) of ``detector`` on the COCO set in ``eval_dir`` with the project's matcher."""
    import json

    from veilset.detectors import evaluate

    coco = json.loads((eval_dir / "annotations.json").read_text())
    tally = evaluate.evaluate(detector, str(eval_dir / "images"), coco, iou=evaluate.DEFAULT_IOU)
    out = evaluate.report(tally, "faces", getattr(detector, "spec", detector.name), detector.identity(),
                          evaluate.DEFAULT_IOU)
    keep = ("images", "boxes", "recall", "tp", "fp", "detections_per_image", "ms_per_image_median", "recall_by_group")
    return {k: out[k] for k in keep}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", help="photos or folders to time (default: ../shared/eval photos)")
    ap.add_argument("--eval", default=str(common.EVAL / "faces"), help="COCO face set for recall (annotations.json + images/)")
    ap.add_argument("--face-detector", default=None, help="veilset face detector spec (default: the library default)")
    ap.add_argument("--workers", type=int, default=None, help="veilset --workers (default: veilset's default)")
    ap.add_argument("--limit", type=int, default=None, help="time at most this many photos")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each tool (median reported; 0: recall only)")
    ap.add_argument("--skip-recall", action="store_true")
    ap.add_argument("--scratch", default=None, help="scratch folder (default: a temp dir, removed)")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.repeat < 0:
        raise SystemExit(f"benchmark: --repeat must be >= 0, got {args.repeat}")
    if args.repeat == 0 and args.skip_recall:
        raise SystemExit("benchmark: --repeat 0 with --skip-recall measures nothing")
    result: dict[str, Any] = {"benchmark": "vs_deface", "machine": common.machine()}
    if args.repeat:
        result.update(time_both(args))
    if not args.skip_recall:
        from veilset.detectors.registry import build_detector
        from veilset.pipeline.options import DEFAULT_FACE_DETECTOR

        spec = args.face_detector or DEFAULT_FACE_DETECTOR
        eval_dir = Path(args.eval)
        if not (eval_dir / "annotations.json").is_file():
            raise SystemExit(f"benchmark: --eval {str(eval_dir)!r} has no annotations.json (COCO); "
                             "use --skip-recall to time only")
        result["recall"] = {"eval": str(eval_dir), "deface": face_recall(DefaceDetector(), eval_dir),
                            "veilset": face_recall(build_detector(spec), eval_dir), "veilset_spec": spec}
    common.write_json(args.json, result)
    return 0


def time_both(args: argparse.Namespace) -> dict[str, Any]:
    exe = deface_executable()
    files = common.collect_images(args.images or common.default_photo_dirs(), args.limit)
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="veilset-vs-deface-")).resolve()
    try:
        src = common.flat_copy(files, scratch / "photos")
        veilset_args = ["build", str(src), "--output", str(scratch / "release"), "--plate-detector", "none",
                        "--masks", "none"]
        if args.face_detector:
            veilset_args += ["--face-detector", args.face_detector]
        if args.workers:
            veilset_args += ["--workers", str(args.workers)]
        runs: dict[str, list[common.Timed]] = {"deface": [], "veilset": []}
        for i in range(args.repeat):
            # deface writes NAME_anonymized.EXT next to each input: give it a fresh copy every time
            dsrc = common.flat_copy(sorted(src.iterdir()), scratch / "deface")
            runs["deface"].append(common.run_timed([exe, str(dsrc), "--ep", "CPUExecutionProvider"]).check())
            shutil.rmtree(scratch / "release", ignore_errors=True)
            runs["veilset"].append(common.run_timed(common.veilset_cmd(*veilset_args)).check())
            print(f"run {i + 1}/{args.repeat}: deface {runs['deface'][-1].wall_s:.1f} s, "
                  f"veilset {runs['veilset'][-1].wall_s:.1f} s", flush=True)
        produced = len(list((scratch / "deface").glob("*_anonymized*")))
        from veilset.release.manifest import load_manifest

        manifest = load_manifest(str(scratch / "release"))
        d_wall = common.median([r.wall_s for r in runs["deface"]])
        v_wall = common.median([r.wall_s for r in runs["veilset"]])
        result: dict[str, Any] = {
            "photos": len(files),
            "deface": {"wall_s": [round(r.wall_s, 2) for r in runs["deface"]], "median_wall_s": round(d_wall, 2),
                       "images_per_s": round(len(files) / d_wall, 2), "outputs": produced,
                       "cpu_s": [round(r.cpu_s, 1) for r in runs["deface"]],
                       "tree_cpu_s": [round(r.tree_cpu_s, 1) for r in runs["deface"]],
                       "cmd": runs["deface"][0].summary()["cmd"],
                       "load_before": [r.load_before for r in runs["deface"]]},
            "veilset": {"wall_s": [round(r.wall_s, 2) for r in runs["veilset"]], "median_wall_s": round(v_wall, 2),
                        "build_s": [common.build_seconds(r.stdout) for r in runs["veilset"]],
                        "cpu_s": [round(r.cpu_s, 1) for r in runs["veilset"]],
                        "tree_cpu_s": [round(r.tree_cpu_s, 1) for r in runs["veilset"]],
                        "images_per_s": round(manifest["counts"]["published"] / v_wall, 2),
                        "counts": manifest["counts"], "cmd": runs["veilset"][0].summary()["cmd"],
                        "face_detector": manifest["models"]["face_detector"],
                        "load_before": [r.load_before for r in runs["veilset"]]},
            "speedup_deface_over_veilset": round(d_wall / v_wall, 3),
            # CPU seconds (user + sys of the whole process tree): less sensitive to other load than wall time
            "cpu_ratio_deface_over_veilset": round(common.median([r.tree_cpu_s for r in runs["deface"]])
                                                   / common.median([r.tree_cpu_s for r in runs["veilset"]]), 3),
        }
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
