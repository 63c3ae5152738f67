"""Near-copies among a build's own inputs (issue 15 §2): two files of one photo -- re-encoded, halved, mirrored, put
in a frame -- are one image. Default: the unframed largest copy is published, the others are counted as duplicates
by reason; ``--near-duplicates publish-all``: every copy is published and names the one it copies. Distinct photos
and flat pictures are never grouped; the grouping is the same whatever the order the records arrive in."""
from __future__ import annotations

import hashlib
import io
import json
import random
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageOps

from veilset.audit import findings as F
from veilset.audit.duplicates import check_duplicates
from veilset.audit.release import Release
from veilset.audit.runner import run_audit
from veilset.cli import main
from veilset.detectors.package_photos import photo_path
from veilset.pipeline import near_duplicates as nd
from veilset.release import fingerprint, ids, index
from veilset.release.manifest import load_manifest
from tests.audit.tamper import republish

BUILD = ["--workers", "1", "--shards", "2", "--formats", "parquet", "--masks", "none", "--plate-detector", "none"]


def _rgb(name: str) -> np.ndarray:
    with Image.open(photo_path(name)) as im:
        return np.asarray(im.convert("RGB"))


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, "JPEG", **kw)
    return buf.getvalue()


def _key(name: str, arr: np.ndarray) -> nd.NearKey:
    fp = fingerprint.fingerprint(arr)
    return nd.near_key(f"sa_{hashlib.sha256(name.encode()).hexdigest()[:32]}", name, arr, fp)


# ------------------------------------------------------------------------------------------------ pure grouping
def _hopper_family() -> dict[str, np.ndarray]:
    h = _rgb("grace_hopper.jpg")
    half = np.asarray(Image.fromarray(h).resize((h.shape[1] // 2, h.shape[0] // 2), Image.LANCZOS))
    framed = np.asarray(ImageOps.expand(Image.fromarray(h), border=60, fill=(255, 255, 255)))
    return {"hopper.jpg": h, "hopper_half.jpg": half, "hopper_mirrored.jpg": np.ascontiguousarray(h[:, ::-1]),
            "hopper_rotated.jpg": np.ascontiguousarray(np.rot90(h)), "hopper_framed.png": framed}


def test_copies_of_one_photo_are_one_group_kept_at_its_unframed_largest_copy():
    keys = [_key(n, a) for n, a in _hopper_family().items()]
    keys += [_key(n, _rgb(n)) for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    found = nd.group(keys)
    by_name = {k.source: k.image_id for k in keys}
    assert {d.source for d in found.values()} == {"hopper_half.jpg", "hopper_mirrored.jpg", "hopper_rotated.jpg",
                                                 "hopper_framed.png"}
    # the framed copy has the most pixels, but its frame is not picture: the original is the one kept
    assert {d.of for d in found.values()} == {by_name["hopper.jpg"]}
    assert all(d.distance <= fingerprint.MATCH_DISTANCE for d in found.values())
    for _ in range(5):  # the same answer whatever order the keys arrive in (a runner's order is not fixed)
        random.shuffle(keys)
        assert nd.group(keys) == found


def test_flat_pictures_are_never_grouped_even_when_their_hashes_agree():
    """PDQ on a flat picture is noise: two such keys with the very same hashes stay apart below MIN_QUALITY."""
    from dataclasses import replace

    grey = np.full((300, 400, 3), 128, np.uint8)
    assert _key("grey.jpg", grey).quality < fingerprint.MIN_QUALITY  # a flat picture is judged flat
    photo = _key("hopper.jpg", _rgb("grace_hopper.jpg"))
    twin = replace(photo, image_id="sa_" + "f" * 32, source="twin.jpg")  # the same hashes: distance 0
    assert nd.group([photo, twin]) == {twin.image_id: nd.NearDuplicate(twin.image_id, "twin.jpg", photo.image_id, 0)}
    flat = fingerprint.MIN_QUALITY - 1
    assert nd.group([replace(photo, quality=flat), replace(twin, quality=flat)]) == {}
    assert nd.group([photo, replace(twin, quality=flat)]) == {}


# ------------------------------------------------------------------------------------------------ real builds
@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    shutil.copyfile(photo_path("grace_hopper.jpg"), folder / "hopper.jpg")
    family = _hopper_family()
    (folder / "hopper_half.jpg").write_bytes(_jpeg(family["hopper_half.jpg"], quality=40))
    (folder / "hopper_mirrored.jpg").write_bytes(_jpeg(family["hopper_mirrored.jpg"], quality=85))
    Image.fromarray(family["hopper_framed.png"]).save(folder / "hopper_framed.png")
    for name in ("chelsea.png", "rocket.jpg", "coffee.png"):
        (folder / (name.split(".")[0] + ".jpg")).write_bytes(_jpeg(_rgb(name), quality=90))
    (folder / "coffee_commented.jpg").write_bytes(_jpeg(_rgb("coffee.png"), quality=90, comment=b"by someone"))
    return folder


def _id(path) -> str:
    return ids.image_id_for(ids.sha256_hex(path.read_bytes()))


def _rows(release) -> list[dict]:
    m = load_manifest(str(release))
    return [row for e in m["index"] for row in index.read(str(release), e["path"])]


@pytest.fixture(scope="module")
def publish_one(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "r"
    assert main(["build", str(photos), "--output", str(out), *BUILD]) == 0
    return out


@pytest.mark.slow
def test_by_default_one_copy_is_published_and_the_others_are_counted_by_reason(photos, publish_one):
    m = load_manifest(str(publish_one))
    assert m["counts"] == {"input": 8, "published": 4, "rejected": 0, "duplicates": 4, "blocked": 0}
    assert m["duplicates_by_reason"] == {"near_duplicate": 3, "same_pixels": 1}
    assert m["config"]["near_duplicates"] == "publish-one" and "near_duplicates_published" not in m
    published = {r["image_id"] for r in _rows(publish_one)}
    assert published == {_id(photos / n) for n in ("hopper.jpg", "chelsea.jpg", "rocket.jpg", "coffee.jpg")}
    report = run_audit(str(publish_one), checks=[F.INTEGRITY, F.DUPLICATES])
    assert report.passed, "\n".join(f.line() for f in report.findings)


@pytest.mark.slow
def test_publish_all_publishes_every_copy_naming_the_one_it_copies(photos, tmp_path):
    out = tmp_path / "all"
    assert main(["build", str(photos), "--output", str(out), *BUILD, "--near-duplicates", "publish-all"]) == 0
    m = load_manifest(str(out))
    assert m["counts"] == {"input": 8, "published": 7, "rejected": 0, "duplicates": 1, "blocked": 0}
    assert m["duplicates_by_reason"] == {"same_pixels": 1} and m["near_duplicates_published"] == 3
    original = _id(photos / "hopper.jpg")
    marked = {r["image_id"]: r.get("near_duplicate_of") for r in _rows(out) if r.get("near_duplicate_of")}
    assert marked == {_id(photos / n): original for n in ("hopper_half.jpg", "hopper_mirrored.jpg",
                                                          "hopper_framed.png")}
    in_parquet = {r["image_id"]: r["near_duplicate_of"] for e in m["shards"]
                  for r in pq.read_table(out / e["path"], columns=["image_id", "near_duplicate_of"]).to_pylist()}
    assert {k: v for k, v in in_parquet.items() if v} == marked
    report = run_audit(str(out), checks=[F.INTEGRITY, F.DUPLICATES])
    assert report.passed, "\n".join(f.line() for f in report.findings)


def test_a_bad_mode_is_a_usage_error(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["build", str(photos), "--output", str(tmp_path / "x"), "--near-duplicates", "publish-some"])
    assert exc.value.code == 2 and "publish-some" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the audit's view
def _copy(release, tmp_path):
    dest = tmp_path / "copy"
    shutil.copytree(release, dest)
    return dest


@pytest.mark.slow
def test_the_audit_finds_a_near_copy_put_back_into_a_publish_one_release(photos, publish_one, tmp_path):
    root = _copy(publish_one, tmp_path)
    hopper = np.asarray(Image.open(io.BytesIO(_published_jpeg(root, _id(photos / "hopper.jpg")))).convert("RGB"))
    rocket = _id(photos / "rocket.jpg")
    republish(str(root), rocket, np.asarray(Image.fromarray(hopper).resize((640, 427))))  # every hash updated, rocket's size
    report = run_audit(str(root), checks=[F.INTEGRITY, F.DUPLICATES])
    assert report.result(F.INTEGRITY).status == F.PASS, "\n".join(f.line() for f in report.findings)
    [hit] = report.result(F.DUPLICATES).findings
    assert {hit.image_id, hit.message.split()[3]} == {rocket, _id(photos / "hopper.jpg")}


def _published_jpeg(root, image_id: str) -> bytes:
    m = load_manifest(str(root))
    for e in m["shards"]:
        for r in pq.read_table(root / e["path"], columns=["image_id", "image"]).to_pylist():
            if r["image_id"] == image_id:
                return r["image"]["bytes"]
    raise KeyError(image_id)


@pytest.mark.slow
def test_the_audit_finds_duplicate_counts_that_do_not_add_up(publish_one, tmp_path):
    root = _copy(publish_one, tmp_path)
    m = json.loads((root / "manifest.json").read_text())
    m["duplicates_by_reason"] = {"near_duplicate": 2, "same_pixels": 1, "made_up": 1}
    m["blocked_by_reason"] = {"removed_id": 1}
    (root / "manifest.json").write_text(json.dumps(m))
    messages = [f.message for f in check_duplicates(Release(str(root))).findings]
    assert "duplicates_by_reason: unknown reason 'made_up'" in messages
    assert "blocked_by_reason sums to 1, counts.blocked is 0" in messages
    assert len(messages) == 2  # 2 + 1 + 1 still sums to the 4 duplicates
