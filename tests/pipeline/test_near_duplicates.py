"""Fingerprints at build, end to end on real photos that ship in packages: every published image carries its PDQ
and pixel hash, two sources publishing the same pixels are one image, and after a takedown no later build (with
the ledger, or without it in the release's own folder) publishes a transformed copy of a removed photo."""
from __future__ import annotations

import io
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from veilset.cli import main
from veilset.detectors.package_photos import photo_path
from veilset.release import fingerprint, ids, index
from veilset.release.manifest import load_manifest
from veilset.takedown.apply import apply_pending
from veilset.takedown.ledger import Ledger, NewRequest

pytestmark = pytest.mark.slow

BUILD = ["--workers", "1", "--shards", "2", "--formats", "parquet", "--masks", "none", "--plate-detector", "none"]


def _rgb(name: str) -> np.ndarray:
    with Image.open(photo_path(name)) as im:
        return np.asarray(im.convert("RGB"))


def _save(arr: np.ndarray, path, fmt: str = "JPEG", **kw) -> None:
    Image.fromarray(arr).save(path, fmt, **kw)


def _copies(hopper: np.ndarray) -> dict[str, bytes]:
    """Copies of a removed photo someone could feed a later build: each a different file."""
    h, w = hopper.shape[:2]
    out = {}
    for name, arr, fmt, kw in (
            ("reencoded.jpg", hopper, "JPEG", {"quality": 40}),
            ("half.jpg", np.asarray(Image.fromarray(hopper).resize((w // 2, h // 2), Image.LANCZOS)), "JPEG", {}),
            ("mirrored.jpg", hopper[:, ::-1], "JPEG", {"quality": 85}),
            ("cropped_1pct.jpg", hopper[h // 200: h - h // 200, w // 200: w - w // 200], "JPEG", {"quality": 90}),
            # beyond PDQ alone (5 % or more): found through the removed image's crop windows (ledger)
            ("cropped_7pct_corner.jpg", hopper[h * 7 // 100:, : w - w * 7 // 100], "JPEG", {"quality": 90}),
            ("cropped_3_to_9pct.jpg", hopper[h * 3 // 100: h - h * 9 // 100, w * 5 // 100: w - w * 3 // 100],
             "JPEG", {"quality": 90}),
            ("copy.png", hopper, "PNG", {})):
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(arr)).save(buf, fmt, **kw)
        out[name] = buf.getvalue()
    return out


def _index_rows(release: str) -> list[dict]:
    m = load_manifest(release)
    return [row for e in m["index"] for row in index.read(release, e["path"])]


def _id_of(path) -> str:
    return ids.image_id_for(ids.sha256_hex(path.read_bytes()))


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """Release 1: four real photos; the coffee photo twice, as two JPEG files that differ only in metadata."""
    photos = tmp_path_factory.mktemp("photos")
    shutil.copyfile(photo_path("grace_hopper.jpg"), photos / "hopper.jpg")
    _save(_rgb("chelsea.png"), photos / "chelsea.png", "PNG")
    _save(_rgb("rocket.jpg"), photos / "rocket.jpg", quality=90)
    _save(_rgb("coffee.png"), photos / "coffee.jpg", quality=90)
    _save(_rgb("coffee.png"), photos / "coffee_with_comment.jpg", quality=90, comment=b"shot by someone")
    out = tmp_path_factory.mktemp("first") / "r"
    assert main(["build", str(photos), "--output", str(out), *BUILD]) == 0
    return photos, out


def test_every_published_image_has_its_fingerprints_and_same_pixels_are_one_image(first):
    photos, out = first
    m = load_manifest(str(out))
    assert m["counts"] == {"input": 5, "published": 4, "rejected": 0, "duplicates": 1, "blocked": 0}
    rows = _index_rows(str(out))
    assert _id_of(photos / "coffee.jpg") in {r["image_id"] for r in rows}  # the first source name is kept
    assert _id_of(photos / "coffee_with_comment.jpg") not in {r["image_id"] for r in rows}
    assert len(rows) == 4 and all(len(r["pdq"]) == 64 and len(r["pixels_sha256"]) == 64 for r in rows)
    for e in m["shards"]:
        for rec in pq.read_table(out / e["path"], columns=["image_id", "image", "pdq", "pixels_sha256"]).to_pylist():
            fp = fingerprint.fingerprint_bytes(rec["image"]["bytes"])
            assert (rec["pdq"], rec["pixels_sha256"]) == (fp.pdq_hex, fp.pixels_sha256)
            assert {"pdq": rec["pdq"], "pixels_sha256": rec["pixels_sha256"]}.items() <= \
                next(r for r in rows if r["image_id"] == rec["image_id"]).items()


def test_copies_of_a_removed_photo_are_blocked_by_later_builds(first, tmp_path):
    photos, out = first
    ledger_path = str(tmp_path / "ledger.sqlite")
    hopper_id = _id_of(photos / "hopper.jpg")
    with Ledger(ledger_path) as ledger:
        ledger.add_request(NewRequest(message_id="<hopper@x>", sender="grace@example.org", date_header="",
                                      source="t", state="received", image_ids=(hopper_id,)))
        # a request by photo of a picture the release does not hold: kept, it blocks later builds
        moto = fingerprint.query_hashes(_rgb("motorcycle.png"), dihedral=True)[0]
        ledger.add_request(NewRequest(message_id="<moto@x>", sender="rider@example.org", date_header="",
                                      source="t", state="received", photo_pdq=tuple(h.hex() for h in moto)))
        report = apply_pending(ledger, str(out), now="2026-12-02T08:00:00Z")
        assert report.removed == (hopper_id,)
        assert [h for _, h in ledger.blocked_fingerprints()] and ledger.blocked_pixel_hashes()
    entry = next(e for e in load_manifest(str(out))["log"] if e["request"] == "<hopper@x>")
    assert len(entry["removed_pdq"]) == 1 and len(entry["removed_pixels"]) == 1

    later = tmp_path / "later"
    later.mkdir()
    for name, data in _copies(_rgb("grace_hopper.jpg")).items():
        (later / name).write_bytes(data)
    _save(_rgb("rocket.jpg"), later / "rocket.jpg", quality=90)  # not removed: published
    _save(_rgb("motorcycle.png"), later / "motorcycle.jpg", quality=90)
    # with the ledger, into a new folder
    rebuilt = tmp_path / "rebuilt"
    assert main(["build", str(later), "--output", str(rebuilt), *BUILD, "--ledger", ledger_path]) == 0
    m = load_manifest(str(rebuilt))
    assert m["counts"]["published"] == 1 and m["counts"]["blocked"] == 8
    assert m["blocked_by_reason"] == {"near_duplicate": 8}
    assert {r["image_id"] for r in _index_rows(str(rebuilt))} == {_id_of(later / "rocket.jpg")}
    # without the ledger, in the taken-down release's own folder: its log carries the removed photo's PDQ and
    # its removed_windows file the crop windows (not the hashes of photos that matched nothing: the ledger's)
    windows = load_manifest(str(out))["removed_windows"]
    assert windows["path"] == "removed-windows.r000002.idx"
    assert main(["build", str(later), "--output", str(out), *BUILD]) == 0
    m = load_manifest(str(out))
    assert m["counts"]["blocked"] == 7 and m["blocked_by_reason"] == {"near_duplicate": 7}
    assert m["counts"]["published"] == 2 and m["removed_windows"] == windows  # carried by the rebuild
    assert (out / windows["path"]).is_file()


def test_an_image_staged_before_the_ledger_grew_is_checked_again_when_resumed(tmp_path):
    """A rerun of an interrupted build reuses what it staged; the removed images' fingerprints may be new since."""
    import pickle

    from apache_beam.pvalue import TaggedOutput

    from veilset.pipeline.graph import Blocked, RemovedFingerprints, Resume, SourceRef, StagedImage, staging_path
    from veilset.pipeline.ingest import InputFile
    from tests.factories import published_photo

    staged = published_photo(_rgb("chelsea.png"), "chelsea")
    path = staging_path(str(tmp_path), "key", staged.image_id)
    (tmp_path / ".staging" / "key").mkdir(parents=True)
    (tmp_path / ".staging" / "key" / f"{staged.image_id}.pkl").write_bytes(pickle.dumps(staged))
    ref = SourceRef(staged.image_id, staged.content_sha256, InputFile(b"/nowhere", "chelsea.png"))
    again = list(Resume(str(tmp_path), 2, "key").process(ref))
    assert isinstance(again[0], TaggedOutput) and again[0].tag == Resume.RESUMED
    assert isinstance(again[0].value, StagedImage) and again[0].value.pixels_sha256 == staged.pixels_sha256
    removed = RemovedFingerprints((("sa_removed", staged.pdq),), frozenset())
    out = list(Resume(str(tmp_path), 2, "key", removed).process(ref))
    assert [(o.tag, o.value) for o in out] == [(Resume.BLOCKED, Blocked("chelsea.png", "near_duplicate"))]
    assert path.endswith(f"{staged.image_id}.pkl")
