"""How well the audit's residual-face scan finds the faces a build missed, against COCO face ground truth.

    veilset build PHOTOS --output R --workers 1 --plate-detector none --masks none
    python benchmarks/audit_residual.py --release R --photos PHOTOS --annotations GT.json \\
        [--face-detector SPEC ...] [--match-iou 0.3]

Ground-truth ``file_name`` is relative to PHOTOS; images are matched to the release by content hash (the image
ID), so the published pixels must be the source pixels (no resize: keep photos under --max-short-side).
For each GT face: *anonymized* when >= 50 % of its box is covered by the release's recorded regions, else
*missed by the build*; a missed face is *caught* when a residual finding overlaps it at IoU >= --match-iou.
Residual findings that overlap no GT face are counted as *unmatched* (often real but unlabelled tiny faces in
WIDER crowds, or false alarms). Each --face-detector is timed on the same release.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from veilset.audit.anonymization import INSIDE_COVERAGE, image_regions  # noqa: E402
from veilset.audit.imaging import coverage, region_mask  # noqa: E402
from veilset.audit.release import Release  # noqa: E402
from veilset.audit.residual import build_residual_detector, check_residual  # noqa: E402
from veilset.detectors.ops import iou_matrix  # noqa: E402
from veilset.release import ids  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", required=True)
    p.add_argument("--photos", required=True)
    p.add_argument("--annotations", required=True)
    p.add_argument("--face-detector", action="append", default=None)
    p.add_argument("--match-iou", type=float, default=0.3)
    args = p.parse_args(argv)
    gt = json.load(open(args.annotations))
    release = Release(args.release)
    rows = {row["image_id"]: row for _, row in release.all_index_rows()}
    regions = image_regions(release)
    gt_by_image: dict[str, list[list[float]]] = defaultdict(list)
    for img in gt["images"]:
        with open(os.path.join(args.photos, img["file_name"]), "rb") as fh:
            iid = ids.image_id_for(ids.sha256_hex(fh.read()))
        if iid not in rows:
            print(f"skip {img['file_name']}: not published")
            continue
        if (rows[iid]["width"], rows[iid]["height"]) != (img["width"], img["height"]):
            print(f"skip {img['file_name']}: published at another size")
            continue
        for a in gt["annotations"]:
            if a["image_id"] == img["id"] and not a.get("ignore"):
                x, y, w, h = a["bbox"]
                gt_by_image[iid].append([x, y, x + w, y + h])
    total = sum(len(v) for v in gt_by_image.values())
    missed: dict[str, list[list[float]]] = {}
    for iid, boxes in gt_by_image.items():
        mask = region_mask(regions.get(iid, []), rows[iid]["width"], rows[iid]["height"])
        missed[iid] = [b for b in boxes if coverage(b, mask) < INSIDE_COVERAGE]
    n_missed = sum(len(v) for v in missed.values())
    print(f"{len(gt_by_image)} images, {total} GT faces: {total - n_missed} anonymized by the build, "
          f"{n_missed} missed by the build")
    for spec in args.face_detector or [None]:
        t0 = time.perf_counter()
        residual = build_residual_detector(spec)
        result = check_residual(release, residual)
        seconds = time.perf_counter() - t0
        caught = unmatched = 0
        by_image: dict[str, list] = defaultdict(list)
        for f in result.findings:
            by_image[f.image_id].append(f.box_xyxy)
        for iid, found in by_image.items():
            all_gt = gt_by_image.get(iid, [])
            if all_gt:
                unmatched += int((iou_matrix(np.array(found), np.array(all_gt)).max(axis=1) < args.match_iou).sum())
            else:
                unmatched += len(found)
        for iid, boxes in missed.items():
            if boxes and by_image.get(iid):
                caught += int((iou_matrix(np.array(boxes), np.array(by_image[iid])).max(axis=1)
                               >= args.match_iou).sum())
        print(f"{residual.spec}: {len(result.findings)} findings; caught {caught}/{n_missed} missed faces "
              f"({caught / max(n_missed, 1):.0%}); {unmatched} findings match no GT face; "
              f"{result.stats['artefacts']} artefacts dropped; {seconds:.1f} s incl. model load "
              f"({seconds / max(len(rows), 1):.2f} s/image)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
