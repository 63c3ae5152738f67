"""The slow checks' per-image work: copies with the same decoded pixels examined once, copies whose pixels differ
each examined, and the same findings in the same order with worker processes as without."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from veilset.audit import findings as F
from veilset.audit.anonymization import check_anonymization
from veilset.audit.parallel import distinct_pixels
from veilset.audit.release import Release
from veilset.audit.runner import run_audit
from veilset.pipeline.encode import encode_jpeg
from tests.audit.conftest import ASTRONAUT_FACE_XYXY, published_pixels, row_of
from tests.audit.tamper import paste, republish, with_segment


def test_copies_with_the_same_pixels_are_one_and_different_pixels_are_two():
    pixels = np.full((16, 24, 3), 90, dtype=np.uint8)
    jpeg = encode_jpeg(pixels)
    same = with_segment(jpeg, 0xFE, b"another comment, the same pixels")
    other = encode_jpeg(np.full((16, 24, 3), 200, dtype=np.uint8))
    assert [f for f, _ in distinct_pixels([("a", jpeg), ("b", same)])] == ["a"]
    assert [f for f, _ in distinct_pixels([("a", jpeg), ("b", same), ("c", other), ("d", b"not a jpeg")])] == ["a", "c"]


def test_each_distinct_set_of_pixels_is_redetected_once(built, copy_release, production):
    good = check_anonymization(Release(built.root), production=production).stats
    assert good["redetected_copies"] == len([i for i in good_regions(built.root)])  # one per image, not per format
    root = copy_release()
    iid = built.image_ids["astronaut"]
    rel = row_of(root, iid)["file_name"]
    path = os.path.join(root, rel)
    data = open(path, "rb").read()
    open(path, "wb").write(with_segment(data, 0xFE, b"same pixels"))  # the images/ copy: other bytes, same pixels
    assert check_anonymization(Release(root), production=production).stats["redetected_copies"] == \
        good["redetected_copies"]
    pixels = np.array(Image.open(path).convert("RGB"))
    pixels[:8, :8] = 255 - pixels[:8, :8]
    open(path, "wb").write(encode_jpeg(pixels))  # other pixels: examined too
    assert check_anonymization(Release(root), production=production).stats["redetected_copies"] == \
        good["redetected_copies"] + 1


def good_regions(root: str) -> list[str]:
    from veilset.audit.anonymization import image_regions

    return [i for i, boxes in image_regions(Release(root)).items() if boxes]


class Progress:
    def __init__(self) -> None:
        self.updates, self.total = [], None

    def __call__(self, total, unit="images", stream=None):
        self.total = total
        return self

    def update(self, done, note=""):
        self.updates.append((done, note))

    def close(self):
        pass


def test_worker_processes_give_the_same_findings_in_the_same_order(built, copy_release):
    root = copy_release()
    astronaut, coffee = built.image_ids["astronaut"], built.image_ids["coffee"]
    original = np.asarray(Image.open(built.inputs["astronaut"]).convert("RGB"))
    x0, y0, x1, y1 = ASTRONAUT_FACE_XYXY
    republish(root, coffee, paste(published_pixels(root, coffee), original[y0:y1, x0:x1], 420, 200))  # residual
    pixels = np.array(published_pixels(root, astronaut))
    pixels[y0:y1, x0:x1] = original[y0:y1, x0:x1]  # the face back over its anonymized region: anonymization
    republish(root, astronaut, pixels)
    checks = [F.ANONYMIZATION, F.RESIDUAL]
    one = run_audit(root, checks=checks, workers=1)
    shown = Progress()
    two = run_audit(root, checks=checks, workers=2, progress=shown)
    assert {r.check for r in one.results if r.status == F.FAIL} == set(checks)
    assert [(f.to_dict(), f.thumbnail_png) for f in two.findings] == [(f.to_dict(), f.thumbnail_png)
                                                                     for f in one.findings]
    assert [r.message for r in two.results] == [r.message for r in one.results]
    done = [d for d, _ in shown.updates]
    assert done == sorted(done) and done[-1] == shown.total
    assert len({d for d, note in shown.updates if note == F.RESIDUAL}) >= 3  # per image, not one jump


def test_the_anonymized_areas_are_read_once_per_audit(built, monkeypatch):
    """The anonymization and residual checks both need every image's regions: one pass over the records (they
    parse every shard's records; five passes were ~5 CPU-s on the 212 eval photos), the same areas as before."""
    from veilset.audit.anonymization import image_areas, image_detections, image_regions

    passes = []
    original = Release.iter_records

    def counted(self):
        passes.append(1)
        return original(self)

    monkeypatch.setattr(Release, "iter_records", counted)
    release = Release(built.root)
    regions, recorded = image_regions(release), image_detections(release)
    assert image_areas(release) is image_areas(release) and len(passes) == 1
    first = {}
    for rec in original(release):
        if rec.detections is not None:
            first.setdefault(rec.image_id, rec)
    assert recorded == {i: list(r.detections) for i, r in first.items()}
    assert set(regions) == set(first) and any(regions.values())
    passes.clear()
    run_audit(built.root, checks=["anonymization", "residual_faces"], workers=1)
    assert len(passes) == 2  # the records check of anonymization; the areas (also the report's detection stats)
