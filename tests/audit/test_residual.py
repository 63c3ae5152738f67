from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from veilset.audit.findings import FAIL, PASS, RESIDUAL
from veilset.audit.imaging import THUMB_PIXEL_BLOCKS
from veilset.audit.release import Release
from veilset.audit.residual import check_residual
from veilset.pipeline.encode import encode_jpeg
from tests.audit.conftest import ASTRONAUT_FACE_XYXY, row_of


def test_good_release_has_no_residual_faces(built, residual):
    result = check_residual(Release(built.root), residual)
    assert result.status == PASS, [f.line() for f in result.findings]


def test_face_pasted_outside_the_regions_is_found_with_an_anonymized_thumbnail(built, copy_release, residual):
    root = copy_release()
    iid = built.image_ids["coffee"]
    rel = row_of(root, iid)["file_name"]
    pixels = np.array(Image.open(os.path.join(root, rel)).convert("RGB"))
    x0, y0, x1, y1 = ASTRONAUT_FACE_XYXY
    face = np.asarray(Image.open(built.inputs["astronaut"]).convert("RGB"))[y0:y1, x0:x1]
    pixels[200:200 + face.shape[0], 420:420 + face.shape[1]] = face
    open(os.path.join(root, rel), "wb").write(encode_jpeg(pixels))
    result = check_residual(Release(root), residual)
    assert result.status == FAIL
    hits = [f for f in result.findings if f.file == rel]
    assert hits and all(f.check == RESIDUAL and f.image_id == iid for f in hits)
    best = max(hits, key=lambda f: f.score)
    bx0, by0, bx1, by1 = best.box_xyxy
    assert bx0 < 420 + 100 and bx1 > 420 and by0 < 320 and by1 > 200  # on the pasted face
    thumb = np.asarray(Image.open(io.BytesIO(best.thumbnail_png)).convert("RGB"))
    # The face box inside the thumbnail is flat blocks: few distinct colours, unlike the real face crop.
    h, w = thumb.shape[:2]
    centre = thumb[h // 3: 2 * h // 3, w // 3: 2 * w // 3].reshape(-1, 3)
    assert len(np.unique(centre, axis=0)) <= THUMB_PIXEL_BLOCKS ** 2
    assert len(np.unique(face.reshape(-1, 3), axis=0)) > 1000


def test_sample_is_deterministic_and_limits_the_scan(built, residual):
    a = check_residual(Release(built.root), residual, sample=2)
    b = check_residual(Release(built.root), residual, sample=2)
    assert a.stats["images_scanned"] == 2
    assert a.stats["residual_per_image"].keys() == b.stats["residual_per_image"].keys()


def test_second_detector_is_retinaface_when_its_weights_load_else_centerface_tiled(monkeypatch):
    import veilset.detectors.registry as registry
    from veilset.audit import residual as R

    built = []

    def fake_build(spec):
        built.append(spec)
        if spec.startswith("retinaface") and not weights_present:
            raise FileNotFoundError("retinaface: no weights found")
        return object()

    monkeypatch.setattr(registry, "build_detector", fake_build)
    weights_present = True
    assert R.build_residual_detector().spec == R.RETINAFACE_SPEC
    weights_present = False
    chosen = R.build_residual_detector()
    assert chosen.spec == R.FALLBACK_SPEC and "RetinaFace unavailable" in chosen.why
    assert R.build_residual_detector("centerface:threshold=0.5").spec == "centerface:threshold=0.5"
    assert built[-1] == "centerface:threshold=0.5"  # an explicit spec is used as given, no fallback
