"""Sensitivity and false alarms of the anonymization re-detection, with and without the context around regions.

    veilset build PHOTOS --output R --workers 1 --plate-detector none --masks none
    python benchmarks/audit_redetect.py --release R --photos PHOTOS

For every published image whose source (found by content hash in PHOTOS) has the published size, the production
detectors are re-run inside the recorded regions on (a) the published pixels -- hits are false alarms, the
anonymization is in place -- and (b) the source pixels -- a stand-in for a release whose anonymization failed,
hits are what the check must catch; each on the full image and on the regions' content only (the audit's mode).
A hit is "strong" when it keeps >= RETAINED_FRACTION of the recorded original score (the audit's finding rule
before findings required identifiability; see benchmarks/audit_findings.py).
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import veilset.audit.anonymization as A  # noqa: E402
from veilset.audit.imaging import decode_rgb, region_mask  # noqa: E402
from veilset.audit.release import Release  # noqa: E402
from veilset.release import ids  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--release", required=True)
    p.add_argument("--photos", required=True)
    args = p.parse_args(argv)
    release = Release(args.release)
    production, problems = A.build_production_detectors(release)
    if problems or not production:
        raise SystemExit(f"cannot rebuild the production detectors: {problems}")
    sources = {}
    for folder, _, files in os.walk(args.photos):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                sources[ids.image_id_for(ids.sha256_hex(fh.read()))] = os.path.join(folder, name)
    regions, recorded = A.image_regions(release), A.image_detections(release)
    tally = {k: [0, 0] for k in ("published/full", "published/content", "source/full", "source/content")}
    n_regions = 0
    for image_id, copies in release.iter_copies_of(release.published_ids()):
        if image_id not in sources or not copies:
            continue
        published = decode_rgb(copies[0].data)
        source = np.asarray(Image.open(sources[image_id]).convert("RGB"))
        if source.shape != published.shape:
            continue
        n_regions += len(regions.get(image_id, []))
        for name, pixels in (("published", published), ("source", source)):
            for mode in ("full", "content"):
                if mode == "full":
                    hits = _full(pixels, regions.get(image_id, []), recorded.get(image_id, []), production)
                else:
                    hits = A.redetect(pixels, regions.get(image_id, []), recorded.get(image_id, []), production)
                tally[f"{name}/{mode}"][0] += len(hits)
                tally[f"{name}/{mode}"][1] += sum(h.strong for h in hits)
    print(f"{n_regions} anonymized regions; production: {', '.join(d.spec for d in production)}; "
          f"strong when retained >= {A.RETAINED_FRACTION}")
    for key, (hits, failing) in tally.items():
        print(f"{key:<18} hits inside regions {hits:5d}   strong {failing:5d}")
    return 0


def _full(pixels, regions_xyxy, recorded, production):
    """``redetect`` without greying the context (for comparison)."""
    h, w = pixels.shape[:2]
    mask = region_mask(regions_xyxy, w, h)
    out = []
    for prod in production:
        for det in prod.detector.detect(pixels):
            cov = A.coverage(det.box_xyxy, mask)
            if cov < A.INSIDE_COVERAGE:
                continue
            same = [d for d in recorded if d.get("label") == det.label]
            original = None
            if same:
                ious = A.iou_matrix(np.array([det.box_xyxy]), np.array([d["box_xyxy"] for d in same]))[0]
                if ious.max() >= A.MATCH_IOU:
                    original = float(same[int(ious.argmax())]["score"]) or None
            out.append(A.Redetection(det.label, tuple(det.box_xyxy), float(det.score), cov, original, prod.key,
                                     prod.spec))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
