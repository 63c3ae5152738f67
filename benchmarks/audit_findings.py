"""Findings of the audit on clean default builds (false-alarm rate) and on tampered releases (leaks caught).

    python benchmarks/audit_findings.py [--work DIR] [--photos DIR ...] [--demo DIR] [--workers 2] [--reuse]
                                        [--calibrate] [--json OUT.json]

1. Builds default releases (``veilset build --workers 2``, every default: CenterFace, ``plates``, pixelate) of
   the eval photos (../shared/eval faces + plates: 212 photos) and of the demo photos (/tmp/ref/demo-in).
   ``--reuse`` keeps a release already built in --work.
2. Audits each (every check) and reports findings per 1,000 published images per check (target <= 1). Each
   residual/anonymization finding is listed with its source photo; findings that were inspected by eye and are
   real leaks of the default build (``VERIFIED_LEAKS``: readable plates the build did not detect) are counted
   apart from the rest.
3. Tamper cases on copies of the demo release, each republished consistently (every format, every hash: see
   tests/audit/tamper.py): a clear face pasted back into its anonymized region, a clear face pasted into another
   image, a readable plate pasted into an anonymized plate region, a readable plate pasted into another image;
   and bytes the strict JPEG rule refuses in one image's every copy (EXIF, XMP, COM, DNL, fill padding, trailing
   bytes: ``tests/audit/tamper.py`` ``METADATA_TAMPERS``).
   Caught = the audit fails on the expected check with a finding that names the image, and on no other check.
4. ``--calibrate``: the figures behind the thresholds in veilset/audit/identifiable.py (``CALIBRATION``):
   facial detail of every anonymized face box vs the source pixels at the same boxes (what a failed anonymization
   would publish), plate reads on anonymized plate boxes vs the source plates, the residual face scan's scores on
   non-faces (published images, outside the regions, the scan's CenterFace at 0.2) and on the ground-truth faces.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import EVAL, REPO, default_photo_dirs, veilset_cmd  # noqa: E402
from veilset.audit import findings as F  # noqa: E402
from veilset.audit.runner import cpu_seconds  # noqa: E402

DEMO = "/tmp/ref/demo-in"
# Residual findings on the default eval build that were looked at (crop + context) and are real: readable plates
# that the default ``plates`` detector did not find. (source photo relative to ../shared/eval, box centre, what)
VERIFIED_LEAKS = (
    ("plates/images/us/a03ced3f-5a97-4e75-8106-fabfd2b8b76e.jpg", (921, 90), "the annotated plate 08E6CK"),
    ("plates/images/br/OUM7311.jpg", (1000, 133), "background plate OLD-3379"),
    ("plates/images/br/JSG9648.jpg", (1233, 470), "background plate OKO-6067"),
    ("plates/images/br/NZM5430.jpg", (54, 330), "background plate PJO-5897"),
    ("plates/images/us/wts-lg-000186.jpg", (499, 70), "background plate FIO T8L"),
)


def sources_by_id(folders: list[str]) -> dict[str, str]:
    from veilset.release import ids

    out = {}
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(dirpath, name)
                with open(path, "rb") as fh:
                    out[ids.image_id_for(ids.sha256_hex(fh.read()))] = path
    return out


@dataclass(frozen=True)
class Cost:
    """Wall seconds and CPU seconds (user + system of this process and every child it waited for) of one step."""

    seconds: float
    cpu_seconds: float


def build(name: str, inputs: list[str], work: Path, workers: int, reuse: bool) -> tuple[str, Cost | None]:
    """The release folder and what building it cost (None: reused)."""
    out = work / name
    if reuse and (out / "manifest.json").is_file():
        return str(out), None
    if out.exists():
        shutil.rmtree(out)
    started, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run(veilset_cmd("build", *inputs, "--output", str(out), "--workers", str(workers)), check=True,
                   stdout=subprocess.DEVNULL)
    cost = Cost(round(time.perf_counter() - started, 1), round(cpu_seconds() - cpu, 1))
    print(f"built {name}: {cost.seconds:.0f} s, {cost.cpu_seconds:.0f} CPU-s", file=sys.stderr)
    return str(out), cost


def verified(source: str, box: tuple[float, ...]) -> str | None:
    rel = os.path.relpath(source, EVAL) if source else ""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for prefix, (x, y), what in VERIFIED_LEAKS:
        if rel.startswith(prefix) and abs(cx - x) <= 30 and abs(cy - y) <= 30:
            return what
    return None


def audit_release(root: str, sources: dict[str, str]) -> dict:
    from veilset.audit.parallel import default_workers
    from veilset.audit.runner import run_audit

    started, cpu = time.perf_counter(), cpu_seconds()
    report = run_audit(root, workers=default_workers())  # as ``veilset audit`` runs by default
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    images = report.result(F.INTEGRITY).stats.get("images", 0)
    per_check = {}
    listed = []
    for r in report.results:
        real = 0
        for f in r.findings:
            what = verified(sources.get(f.image_id, ""), f.box_xyxy) if f.box_xyxy else None
            real += what is not None
            listed.append({"check": r.check, "source": os.path.relpath(sources.get(f.image_id, "?"), REPO.parent),
                           "image_id": f.image_id, "message": f.message, "verified_leak": what})
        per_check[r.check] = {"findings": len(r.findings), "verified_leaks": real}
    return {"release": root, "images": images, "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
            "passed": report.passed,
            "per_check": per_check, "findings": listed,
            "stats": {r.check: {k: v for k, v in r.stats.items() if k not in ("scores", "residual_per_image")}
                      for r in report.results}}


# ---------------------------------------------------------------------------------------------- tamper cases
def tamper_cases(demo_root: str, demo_sources: dict[str, str], work: Path) -> list[dict]:
    from PIL import Image

    from tests.audit.tamper import METADATA_TAMPERS, draw_plate, paste, republish, republish_jpeg
    from veilset.audit.anonymization import image_detections
    from veilset.audit.release import Release
    from veilset.audit.runner import run_audit

    release = Release(demo_root)
    recorded = image_detections(release)
    by_name = {os.path.basename(p): i for i, p in demo_sources.items() if i in recorded or i in
               set(release.published_ids())}

    def pixels_of(root: str, image_id: str) -> np.ndarray:
        from veilset.audit.imaging import decode_rgb

        copies = dict(Release(root).iter_copies_of([image_id]))[image_id]
        return np.array(decode_rgb(copies[0].data))

    def biggest(image_id: str, label: str) -> list[float]:
        boxes = [d["box_xyxy"] for d in recorded[image_id] if d["label"] == label]
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))

    astronaut, coffee, hopper = by_name["astronaut.png"], by_name["coffee.png"], by_name["grace_hopper.jpg"]

    def face_back(px: np.ndarray) -> np.ndarray:
        src = np.asarray(Image.open(demo_sources[astronaut]).convert("RGB"))
        x0, y0, x1, y1 = (int(v) for v in biggest(astronaut, "face"))
        px[y0 - 10:y1 + 10, x0 - 10:x1 + 10] = src[y0 - 10:y1 + 10, x0 - 10:x1 + 10]
        return px

    def face_elsewhere(px: np.ndarray) -> np.ndarray:
        src = np.asarray(Image.open(demo_sources[astronaut]).convert("RGB"))
        x0, y0, x1, y1 = (int(v) for v in biggest(astronaut, "face"))
        return paste(px, src[y0:y1, x0:x1], 380, 180)

    def plate_back(px: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = (int(v) for v in biggest(hopper, "license_plate"))
        plate = draw_plate("KX 4827", height=max(16, min(y1 - y0, int((x1 - x0) / 4.5))))
        return paste(px, plate, x0, y0)

    def plate_elsewhere(px: np.ndarray) -> np.ndarray:
        return paste(px, draw_plate("MB 3920", height=36), 40, px.shape[0] - 80)

    cases = [("clear face pasted back into its region", astronaut, face_back, F.ANONYMIZATION),
             ("clear face pasted into another image", coffee, face_elsewhere, F.RESIDUAL),
             ("readable plate pasted into a plate region", hopper, plate_back, F.ANONYMIZATION),
             ("readable plate pasted into another image", coffee, plate_elsewhere, F.RESIDUAL)]
    cases = [(name, image_id, lambda root, i, c=change: republish(root, i, c(pixels_of(root, i))), check)
             for name, image_id, change, check in cases]
    cases += [(f"{case} in the published JPEG bytes (every copy, hashes updated)", coffee,
               lambda root, i, c=change: republish_jpeg(root, i, c), F.METADATA)
              for case, (change, _) in sorted(METADATA_TAMPERS.items())]
    out = []
    for n, (name, image_id, tamper, check) in enumerate(cases):
        root = work / f"tamper-{n}"
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(demo_root, root)
        tamper(str(root), image_id)
        report = run_audit(str(root))
        failing = sorted(r.check for r in report.results if r.status == F.FAIL)
        named = [f.message for f in report.result(check).findings if f.image_id == image_id]
        out.append({"case": name, "expected_check": check, "caught": bool(named) and failing == [check],
                    "failing_checks": failing, "finding": named[0] if named else None})
        shutil.rmtree(root)
    return out


# ---------------------------------------------------------------------------------------------- calibration
def calibrate(releases: dict[str, str], sources: dict[str, str]) -> dict:
    from PIL import Image

    from veilset.audit.anonymization import image_detections
    from veilset.audit.identifiable import FACE_MIN_SIDE, PlateReader, crop, face_detail
    from veilset.audit.imaging import decode_rgb
    from veilset.audit.release import Release
    from veilset.detectors.ops import iou_matrix

    gt_faces, gt_plates = _ground_truth(sources)
    reader = PlateReader()
    anon_detail: list[tuple[float, float]] = []  # (side, detail) of anonymized face boxes
    src_detail: list[tuple[float, float]] = []  # (side, detail) of real faces (source pixels, same boxes)
    anon_plate, src_plate = [], []
    for root in releases.values():
        release = Release(root)
        recorded = image_detections(release)
        for image_id, copies in release.iter_copies_of(release.published_ids()):
            pub = decode_rgb(copies[0].data)
            src = None
            if image_id in sources:
                s = np.asarray(Image.open(sources[image_id]).convert("RGB"))
                src = s if s.shape == pub.shape else None
            for d in recorded.get(image_id, []):
                box = d["box_xyxy"]
                side = min(box[2] - box[0], box[3] - box[1])
                if d["label"] == "face":
                    detail = face_detail(pub, box)
                    if detail is not None:
                        anon_detail.append((side, detail))
                    real = _matches(box, gt_faces.get(image_id), 0.5) if image_id in gt_faces else d["score"] >= 0.6
                    if src is not None and real and side >= 16:
                        s_detail = face_detail(src, box)
                        if s_detail is not None:
                            src_detail.append((side, s_detail))
                        elif side >= 16:
                            src_detail.append((side, _detail_any(src, box)))
                else:
                    anon_plate.append(reader.read(crop(pub, box)))
                    if src is not None and _matches(box, gt_plates.get(image_id), 0.3):
                        src_plate.append(reader.read(crop(src, box)))
    big = [d for s, d in anon_detail if s >= FACE_MIN_SIDE]
    real_big = [d for s, d in src_detail if s >= FACE_MIN_SIDE]
    small_anon = [d for s, d in anon_detail if 16 <= s < FACE_MIN_SIDE]
    small_real = [d for s, d in src_detail if 16 <= s < FACE_MIN_SIDE]
    third = sorted(_kth_prob(r, 3) for r in anon_plate)
    return {
        "face": {"anonymized_n": len(big), "anonymized_max": _r(max(big, default=0)),
                 "anonymized_p99": _r(np.percentile(big, 99) if big else 0),
                 "original_n": len(real_big), "original_min": _r(min(real_big, default=0)),
                 "original_p10": _r(np.percentile(real_big, 10) if real_big else 0),
                 "small_16_24_anonymized_max": _r(max(small_anon, default=0)),
                 "small_16_24_original_p10": _r(np.percentile(small_real, 10) if small_real else 0)},
        "plate": {"anonymized_n": len(anon_plate), "anonymized_read": sum(r.reads() for r in anon_plate),
                  "anonymized_3rd_char_prob_max": _r(third[-1] if third else 0),
                  "anonymized_3rd_char_prob_2nd": _r(third[-2] if len(third) > 1 else 0),
                  "anonymized_read_without_digit_rule": sum(len(r.confident()) >= 3 for r in anon_plate),
                  "original_n": len(src_plate), "original_read": sum(r.reads() for r in src_plate),
                  "original_read_as_plate": sum(r.reads() and r.looks_like_plate() for r in src_plate)},
        "residual_face": _residual_face_scores(releases, sources, gt_faces),
    }


def _r(v: float) -> float:
    return round(float(v), 3)


def _detail_any(px: np.ndarray, box: list[float]) -> float:
    from veilset.audit import identifiable

    saved = identifiable.FACE_MIN_SIDE
    identifiable.FACE_MIN_SIDE = 1
    try:
        return identifiable.face_detail(px, box) or 0.0
    finally:
        identifiable.FACE_MIN_SIDE = saved


def _kth_prob(reading, k: int) -> float:
    p = sorted((pr for c, pr in zip(reading.text, reading.probs) if c.isascii() and c.isalnum()), reverse=True)
    return p[k - 1] if len(p) >= k else 0.0


def _matches(box: list[float], truth: list[list[float]] | None, iou: float) -> bool:
    from veilset.detectors.ops import iou_matrix

    if not truth:
        return False
    return bool(iou_matrix(np.array([box], dtype=float), np.array(truth, dtype=float))[0].max() >= iou)


def _ground_truth(sources: dict[str, str]) -> tuple[dict, dict]:
    by_path = {os.path.realpath(p): i for i, p in sources.items()}
    faces: dict[str, list] = {}
    plates: dict[str, list] = {}
    for sub, out in (("faces", faces), ("plates", plates)):
        path = EVAL / sub / "annotations.json"
        if not path.is_file():
            continue
        doc = json.loads(path.read_text())
        files = {im["id"]: os.path.realpath(EVAL / sub / "images" / im["file_name"]) for im in doc["images"]}
        for a in doc["annotations"]:
            image_id = by_path.get(files[a["image_id"]])
            if image_id and not a.get("iscrowd"):
                x, y, w, h = a["bbox"]
                out.setdefault(image_id, []).append([x, y, x + w, y + h])
    return faces, plates


def _residual_face_scores(releases: dict[str, str], sources: dict[str, str], gt_faces: dict) -> dict:
    """The residual scan's CenterFace (``FALLBACK_SPEC``) at 0.2: the best score of any candidate outside the regions
    of the clean builds (none of which is a face), and the share of ground-truth faces >= FACE_MIN_SIDE px (source
    photos) it scores at >= RESIDUAL_FACE_THRESHOLD."""
    from PIL import Image

    from veilset.audit.anonymization import INSIDE_COVERAGE, image_regions
    from veilset.audit.identifiable import FACE_MIN_SIDE
    from veilset.audit.imaging import coverage, region_mask
    from veilset.audit.release import Release
    from veilset.audit.residual import FALLBACK_SPEC, RESIDUAL_FACE_THRESHOLD, confirm
    from veilset.detectors.ops import iou_matrix
    from veilset.detectors.registry import build_detector

    det = build_detector(FALLBACK_SPEC.replace(f"threshold={RESIDUAL_FACE_THRESHOLD}", "threshold=0.2"))
    outside: list[float] = []
    for root in releases.values():
        release = Release(root)
        regions = image_regions(release)
        for image_id, _, px in release.iter_decoded_copies(release.published_ids()):
            mask = region_mask(regions.get(image_id, []), px.shape[1], px.shape[0])
            cands = [d for d in det.detect(px) if coverage(d.box_xyxy, mask) < INSIDE_COVERAGE]
            outside += [d.score for d, ok in zip(cands, confirm(det, px, mask, cands)) if ok]
    scores = []
    for image_id, truth in gt_faces.items():
        px = np.asarray(Image.open(sources[image_id]).convert("RGB"))
        dets = det.detect(px)
        for box in truth:
            if min(box[2] - box[0], box[3] - box[1]) < FACE_MIN_SIDE:
                continue
            ious = iou_matrix(np.array([box], float), np.array([d.box_xyxy for d in dets], float).reshape(-1, 4))
            best = int(ious[0].argmax()) if len(dets) else -1
            scores.append(dets[best].score if best >= 0 and ious[0, best] >= 0.4 else 0.0)
    return {"candidates_outside_regions": len(outside), "candidate_score_max": _r(max(outside, default=0)),
            "gt_faces_ge_min_side": len(scores),
            "gt_faces_scored_ge_threshold": int(sum(s >= RESIDUAL_FACE_THRESHOLD for s in scores))}


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default="/tmp/veilset-audit-findings", help="releases and tamper copies go here")
    p.add_argument("--photos", action="append", default=None, help="eval photo folders (default: faces + plates)")
    p.add_argument("--demo", default=DEMO)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reuse", action="store_true", help="keep releases already built in --work")
    p.add_argument("--calibrate", action="store_true", help="also measure the thresholds' calibration figures")
    p.add_argument("--skip-tamper", action="store_true")
    p.add_argument("--tamper-only", action="store_true", help="only the tamper cases (no audit of the clean builds)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    photos = args.photos or default_photo_dirs()
    releases, folders, costs = {}, {}, {}
    if photos:
        releases["eval"], costs["eval"] = build("eval", photos, work, args.workers, args.reuse)
        folders["eval"] = photos
    if os.path.isdir(args.demo):
        releases["demo"], costs["demo"] = build("demo", [args.demo], work, args.workers, args.reuse)
        folders["demo"] = [args.demo]
    if not releases:
        raise SystemExit("audit_findings: no photos (../shared/eval or --demo)")
    sources = sources_by_id([f for fs in folders.values() for f in fs])
    out: dict = {}
    if not args.tamper_only:
        out = clean_findings(releases, sources)
        out["cost"] = audit_vs_build(out["results"], costs)
    if not args.skip_tamper and "demo" in releases:
        out["tamper"] = tamper_cases(releases["demo"], {i: s for i, s in sources.items()
                                                        if s.startswith(args.demo)}, work)
        for t in out["tamper"]:
            print(f"tamper: {t['case']:<45} {'CAUGHT' if t['caught'] else 'MISSED'} by {t['expected_check']} "
                  f"(failing: {', '.join(t['failing_checks']) or 'none'}): {t['finding']}")
    if args.calibrate:
        out["calibration"] = calibrate(releases, sources)
        print("calibration:", json.dumps(out["calibration"], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


def audit_vs_build(results: dict, costs: dict[str, Cost | None]) -> dict:
    """Build and audit of the same releases, wall and CPU seconds, and audit / build (the goal: <= 1)."""
    if any(costs.get(name) is None for name in results):
        return {}
    build = Cost(sum(costs[n].seconds for n in results), sum(costs[n].cpu_seconds for n in results))
    audit = Cost(sum(r["seconds"] for r in results.values()), sum(r["cpu_seconds"] for r in results.values()))
    ratio = {"wall": round(audit.seconds / build.seconds, 2), "cpu": round(audit.cpu_seconds / build.cpu_seconds, 2)}
    print(f"build {build.seconds:.0f} s / {build.cpu_seconds:.0f} CPU-s, audit {audit.seconds:.0f} s / "
          f"{audit.cpu_seconds:.0f} CPU-s: audit / build {ratio['wall']} wall, {ratio['cpu']} CPU")
    return {"build": asdict(build), "audit": asdict(audit), "audit_over_build": ratio}


def clean_findings(releases: dict[str, str], sources: dict[str, str]) -> dict:
    """Audit every clean build and print findings per check (per 1,000 images, verified leaks apart)."""
    results = {name: audit_release(root, sources) for name, root in releases.items()}
    images = sum(r["images"] for r in results.values())
    print(f"{'check':<16}" + "".join(f"{name + ' (' + str(r['images']) + ')':>16}" for name, r in results.items())
          + f"{'per 1,000':>11}{'real leaks':>12}{'others /1,000':>15}")
    for check in F.CHECKS:
        n = sum(r["per_check"][check]["findings"] for r in results.values())
        real = sum(r["per_check"][check]["verified_leaks"] for r in results.values())
        print(f"{check:<16}" + "".join(f"{r['per_check'][check]['findings']:>16}" for r in results.values())
              + f"{1000 * n / images:>11.1f}{real:>12}{1000 * (n - real) / images:>15.1f}")
    for name, r in results.items():
        checks = ", ".join(f"{c} {st.get('seconds')} s / {st.get('cpu_seconds')} CPU-s" for c, st in r["stats"].items())
        print(f"{name}: {r['images']} images, audit {r['seconds']} s ({checks}), {r['cpu_seconds']} CPU-s, "
              f"{'PASS' if r['passed'] else 'FAIL'}")
        for f in r["findings"]:
            tag = f"REAL LEAK ({f['verified_leak']})" if f["verified_leak"] else "UNVERIFIED"
            print(f"  [{f['check']}] {tag} {f['source']}: {f['message']}")
    return {"images": images, "results": results}


if __name__ == "__main__":
    raise SystemExit(main())
