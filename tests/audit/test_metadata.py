from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from veilset.audit.findings import FAIL, METADATA, PASS
from veilset.audit.metadata import JpegParseError, jpeg_metadata_problems, parse_segments
from veilset.audit.release import Release
from veilset.audit.metadata import check_metadata
from veilset.pipeline.encode import encode_jpeg
from tests.audit.conftest import index_rows


def _clean_jpeg(progressive: bool = False) -> bytes:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    if not progressive:
        return encode_jpeg(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", progressive=True)
    data = buf.getvalue()
    return data[:2] + data[4 + int.from_bytes(data[4:6], "big"):]  # drop Pillow's JFIF APP0


def _with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    length = (len(payload) + 2).to_bytes(2, "big")
    return data[:2] + bytes([0xFF, marker]) + length + payload + data[2:]


def test_clean_jpeg_has_no_problems():
    data = _clean_jpeg()
    segments, trailing = parse_segments(data)
    assert trailing == 0 and segments
    assert jpeg_metadata_problems(data) == []


@pytest.mark.parametrize("marker,payload,kind", [
    (0xE1, b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x88\x25\x00\x04", "EXIF (GPS pointer)"),
    (0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>", "XMP"),
    (0xED, b"Photoshop 3.0\x008BIM", "IPTC/Photoshop"),
    (0xE2, b"ICC_PROFILE\x00\x01\x01", "ICC profile"),
    (0xE0, b"JFXX\x00\x10", "JFIF thumbnail"),
    (0xFE, b"shot by Alice", "comment"),
])
def test_each_metadata_kind_is_named(marker, payload, kind):
    problems = jpeg_metadata_problems(_with_segment(_clean_jpeg(), marker, payload))
    assert len(problems) == 1 and kind in problems[0]


def test_progressive_scans_are_walked_and_trailing_bytes_reported():
    data = _clean_jpeg(progressive=True)
    segments, _ = parse_segments(data)
    assert sum(s.marker == 0xDA for s in segments) > 1
    assert jpeg_metadata_problems(data + b"\xff\xd8hidden thumbnail") == ["18 bytes after EOI"]


def test_pillow_exif_is_found():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    Image.open(io.BytesIO(_clean_jpeg())).save(buf, "JPEG", exif=exif.tobytes())
    assert any("EXIF" in p for p in jpeg_metadata_problems(buf.getvalue()))


def test_garbage_is_a_parse_problem_not_a_crash():
    with pytest.raises(JpegParseError):
        parse_segments(b"\xff\xd8\xff\xe1\x00")
    assert "unreadable" in jpeg_metadata_problems(b"not a jpeg")[0]


def test_release_with_exif_added_to_a_published_jpeg_fails(built, copy_release):
    assert check_metadata(Release(built.root)).status == PASS
    root = copy_release()
    row = index_rows(root)[0]
    path = os.path.join(root, row["file_name"])
    data = open(path, "rb").read()
    open(path, "wb").write(_with_segment(data, 0xE1, b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"))
    result = check_metadata(Release(root))
    assert result.status == FAIL
    [finding] = result.findings
    assert (finding.check, finding.file, finding.image_id) == (METADATA, row["file_name"], row["image_id"])
    assert "APP1" in finding.message and "EXIF" in finding.message


def test_comment_in_a_tar_member_is_found(built, copy_release):
    import tarfile

    root = copy_release()
    rel = next(f"sa1b/{n}" for n in sorted(os.listdir(os.path.join(root, "sa1b"))))
    path = os.path.join(root, rel)
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    name = next(m.name for m, _ in members if m.name.endswith(".jpg"))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            if m.name == name:
                data = _with_segment(data, 0xFE, b"taken at 12 Main Street")
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    result = check_metadata(Release(root))
    [finding] = result.findings
    assert finding.file == f"{rel}:{name}" and finding.image_id == name[:-4]
    assert "COM" in finding.message and "comment" in finding.message
