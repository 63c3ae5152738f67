from __future__ import annotations

import os

import numpy as np
from PIL import Image

from veilset.audit.anonymization import check_anonymization
from veilset.audit.findings import ANONYMIZATION, FAIL, PASS
from veilset.audit.release import Release
from veilset.pipeline.encode import encode_jpeg
from tests.audit.conftest import coco_path, load_json, row_of, save_json


def _face_boxes(root: str, image_id: str) -> list:
    doc = load_json(coco_path(root, image_id))
    entry = next(im for im in doc["images"] if im["image_id"] == image_id)
    return [d["box_xyxy"] for d in entry["detections"] if d["label"] == "face"]


def test_good_release_records_and_blur_hold(built, production):
    result = check_anonymization(Release(built.root), production=production)
    assert result.status == PASS, [f.line() for f in result.findings]
    assert result.stats["redetected_images"] == 3


def test_unblurred_region_is_found(built, copy_release, production):
    root = copy_release()
    iid = built.image_ids["astronaut"]
    boxes = _face_boxes(root, iid)
    assert boxes, "the build should have found the astronaut's face"
    original = np.asarray(Image.open(built.inputs["astronaut"]).convert("RGB"))
    pixels = np.array(Image.open(os.path.join(root, row_of(root, iid)["file_name"])).convert("RGB"))
    assert pixels.shape == original.shape
    for x0, y0, x1, y1 in boxes:  # paste the original pixels back over the anonymized region (and around it)
        x0, y0 = max(0, int(x0) - 20), max(0, int(y0) - 20)
        x1, y1 = int(x1) + 20, int(y1) + 20
        pixels[y0:y1, x0:x1] = original[y0:y1, x0:x1]
    rel = row_of(root, iid)["file_name"]
    open(os.path.join(root, rel), "wb").write(encode_jpeg(pixels))
    result = check_anonymization(Release(root), production=production)
    assert result.status == FAIL
    hits = [f for f in result.findings if f.file == rel]
    assert hits and all(f.image_id == iid and f.check == ANONYMIZATION for f in hits)
    assert any("face still identifiable inside an anonymized region" in f.message for f in hits)
    assert all(f.thumbnail_png for f in hits)


def test_missing_record_is_found(built, copy_release, production):
    root = copy_release()
    iid = built.image_ids["hopper"]
    path = coco_path(root, iid)
    doc = load_json(path)
    for im in doc["images"]:
        if im["image_id"] == iid:
            del im["anonymization"]
    save_json(path, doc)
    result = check_anonymization(Release(root), production=[])
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    assert any(f.file == rel and f.image_id == iid and f.message == "no anonymization record"
               for f in result.findings)


def test_score_below_recorded_threshold_and_format_disagreement_are_found(built, copy_release):
    root = copy_release()
    iid = built.image_ids["astronaut"]
    path = coco_path(root, iid)
    doc = load_json(path)
    entry = next(im for im in doc["images"] if im["image_id"] == iid)
    entry["detections"][0]["score"] = 0.01
    save_json(path, doc)
    result = check_anonymization(Release(root), production=[])
    messages = [f.message for f in result.findings if f.image_id == iid]
    assert any("below the recorded threshold" in m for m in messages)
    assert any("differ from" in m for m in messages)


def test_production_threshold_is_pinned_from_the_record():
    from veilset.audit.anonymization import pin_threshold

    assert pin_threshold("centerface", 0.3) == "centerface:threshold=0.3"
    assert pin_threshold("centerface:preset=crowd", 0.25) == "centerface:preset=crowd,threshold=0.25"
    assert pin_threshold("centerface:threshold=0.5", 0.3) == "centerface:threshold=0.5"  # explicit: as built
    assert pin_threshold("plates", None) == "plates"


def test_redetection_strength_is_measured_as_evidence_not_as_a_verdict():
    """A re-detection's retained score is shown in a finding; whether there is a finding is decided by
    identifiability (test_leaks.py: a strong re-detection on a pixelated face is not a finding)."""
    from veilset.audit.anonymization import RETAINED_FRACTION, Redetection

    outline = Redetection("face", (0, 0, 10, 10), 0.22, 1.0, 0.91, "face_detector", "centerface")
    unblurred = Redetection("face", (0, 0, 10, 10), 0.90, 1.0, 0.91, "face_detector", "centerface")
    unrecorded = Redetection("face", (0, 0, 10, 10), 0.25, 1.0, None, "face_detector", "centerface")
    assert outline.retained < RETAINED_FRACTION and not outline.strong
    assert unblurred.strong and unrecorded.strong


def test_a_hit_on_a_fragment_of_a_region_is_compared_with_the_detection_the_region_was_made_for():
    from types import SimpleNamespace

    from veilset.audit.anonymization import _original_score

    recorded = [{"label": "face", "box_xyxy": [100, 100, 200, 220], "score": 0.8},
                {"label": "face", "box_xyxy": [300, 50, 310, 60], "score": 0.12},
                {"label": "license_plate", "box_xyxy": [0, 300, 60, 320], "score": 0.9}]
    regions = [[75, 70, 225, 250], [297, 47, 313, 63], [0, 300, 60, 320]]
    same_box = SimpleNamespace(label="face", box_xyxy=(102, 98, 198, 224))
    fragment = SimpleNamespace(label="face", box_xyxy=(201, 80, 216, 95))  # in the margin of the big face's region
    elsewhere = SimpleNamespace(label="face", box_xyxy=(400, 400, 420, 420))
    plate_area = SimpleNamespace(label="face", box_xyxy=(5, 302, 20, 318))  # a face hit on a plate region
    assert _original_score(same_box, recorded, regions, 500, 500) == (0.8, "box")
    assert _original_score(fragment, recorded, regions, 500, 500) == (0.8, "region")
    assert _original_score(elsewhere, recorded, regions, 500, 500) == (None, "")
    assert _original_score(plate_area, recorded, regions, 500, 500) == (None, "")
