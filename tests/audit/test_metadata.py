from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from veilset.audit.findings import FAIL, INTEGRITY, METADATA, PASS
from veilset.audit.metadata import check_metadata, jpeg_metadata_problems
from veilset.audit.release import Release
from veilset.audit.runner import run_audit
from veilset.pipeline.encode import encode_jpeg
from veilset.release import jpeg
from tests.audit.tamper import EXIF, METADATA_TAMPERS, XMP, republish_jpeg, with_segment


def _clean_jpeg(progressive: bool = False) -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    if not progressive:
        return encode_jpeg(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", progressive=True)
    return buf.getvalue()


def test_clean_jpeg_has_no_problems():
    data = _clean_jpeg()
    assert jpeg.strict_violations(data) == []
    assert jpeg_metadata_problems(data) == []


@pytest.mark.parametrize("marker,payload,kind", [
    (0xE1, EXIF, "EXIF (GPS pointer)"),
    (0xE1, XMP, "XMP"),
    (0xED, b"Photoshop 3.0\x008BIM", "IPTC/Photoshop"),
    (0xE2, b"ICC_PROFILE\x00\x01\x01", "ICC profile"),
    (0xE0, b"JFXX\x00\x10", "JFIF thumbnail"),
    (0xFE, b"shot by Alice", "comment"),
    (0xDC, b"\x00\x30", "DNL"),
    (0xEF, b"whatever", "unknown application data"),
])
def test_each_metadata_kind_is_named(marker, payload, kind):
    problems = jpeg_metadata_problems(with_segment(_clean_jpeg(), marker, payload))
    assert len(problems) == 1 and kind in problems[0] and jpeg.marker_name(marker) in problems[0]


def test_a_bare_jfif_header_is_allowed_but_one_with_a_thumbnail_is_not():
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    assert jpeg_metadata_problems(with_segment(_clean_jpeg(), 0xE0, jfif)) == []
    thumb = jfif[:-2] + b"\x01\x01" + b"\x00\x00\x00"
    assert "APP0" in jpeg_metadata_problems(with_segment(_clean_jpeg(), 0xE0, thumb))[0]


def test_the_audit_applies_the_builds_strict_rule():
    """Anything ``strict_violations`` refuses is a metadata problem: a second scan, padding, trailing bytes."""
    progressive = _clean_jpeg(progressive=True)
    assert jpeg_metadata_problems(progressive) == jpeg.strict_violations(progressive) != []
    clean = _clean_jpeg()
    assert jpeg_metadata_problems(clean + b"\xff\xd8hidden thumbnail") == ["18 byte(s) after EOI"]
    assert "before" in jpeg_metadata_problems(clean[:2] + b"\xff\xff" + clean[2:])[0]


def test_pillow_exif_is_found():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    Image.open(io.BytesIO(_clean_jpeg())).save(buf, "JPEG", exif=exif.tobytes())
    assert any("EXIF" in p for p in jpeg_metadata_problems(buf.getvalue()))


def test_garbage_is_a_problem_not_a_crash():
    assert "SOI" in jpeg_metadata_problems(b"not a jpeg")[0]
    assert "truncated" in jpeg_metadata_problems(b"\xff\xd8\xff\xe1\x00")[0]


# ------------------------------------------------------------------ tampered releases, every hash kept consistent
@pytest.mark.parametrize("case", sorted(METADATA_TAMPERS))
def test_tampered_metadata_fails_in_every_published_copy(built, copy_release, case):
    """One image's bytes changed in Parquet, images/ and the SA-1B tar, every hash updated: integrity passes,
    the metadata check names the image, each file and itself."""
    change, what = METADATA_TAMPERS[case]
    root = copy_release()
    image_id = built.image_ids["astronaut"]
    republish_jpeg(root, image_id, change)
    report = run_audit(root, checks=[INTEGRITY, METADATA])
    assert report.result(INTEGRITY).status == PASS, report.result(INTEGRITY).findings
    result = report.result(METADATA)
    assert result.status == FAIL and not report.passed
    [(_, copies)] = Release(root).iter_copies_of([image_id])
    files = {c.file for c in copies}
    assert {f.split("/")[0] for f in files} == {"parquet", "images", "sa1b"}
    assert {f.file for f in result.findings} == files
    for finding in result.findings:
        assert (finding.check, finding.image_id) == (METADATA, image_id) and what in finding.message


def test_clean_release_passes(built):
    assert check_metadata(Release(built.root)).status == PASS
