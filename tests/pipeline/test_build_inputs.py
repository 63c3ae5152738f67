"""A real ``veilset build`` on hostile input folders: FIFOs, symlinks out of the root, dangling and looping links,
names in any bytes. Nothing hangs, nothing outside the root is published, every reject has a stage and a reason,
and no absolute path of the build machine (nor a rejected file's content) reaches the release."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from veilset.cli import main
from veilset.release import ids
from veilset.release.manifest import load_manifest
from tests.imagegen import make_pattern, make_png

pytestmark = pytest.mark.slow

FAST = ["--workers", "1", "--masks", "none", "--plate-detector", "none"]
SECRET = b"password=hunter2 (the content of a text file named .jpg)"
NAMES = {  # raw file name -> how the release names it
    b"bad\xff\xfename.png": "bad\\xff\\xfename.png",
    b"new\nline.png": "new\\nline.png",
    b"x" * 251 + b".png": "x" * 251 + ".png",
}


def _image(seed: int) -> bytes:
    return make_png(make_pattern(48, 64, seed=seed))


def _id(data: bytes) -> str:
    return ids.image_id_for(ids.sha256_hex(data))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    root = base / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "plain.png").write_bytes(_image(0))
    raw = os.fsencode(str(root))
    for k, name in enumerate(NAMES):
        with open(os.path.join(raw, name), "wb") as fh:
            fh.write(_image(k + 1))
    (base / "outside.png").write_bytes(_image(99))  # a photo of the machine that is not an input
    os.symlink(base / "outside.png", root / "outside-link.png")
    os.symlink(root / "missing.png", root / "dangling.png")
    os.symlink(root / "loop-b.png", root / "loop-a.png")
    os.symlink(root / "loop-a.png", root / "loop-b.png")
    os.symlink("..", root / "sub" / "up")
    os.symlink("../plain.png", root / "sub" / "same.png")  # inside the root: followed, a duplicate
    (root / "notes.jpg").write_bytes(SECRET)
    out = base / "release"
    assert main(["build", str(root), "--output", str(out), "--shards", "2", "--formats", "parquet,coco,sa1b",
                 *FAST]) == 0
    return base, root, out


def _rejects(out):
    rejects = load_manifest(str(out))["rejects"]
    return [json.loads(line) for line in (out / rejects).read_text().splitlines()]


def _published_ids(out):
    m = load_manifest(str(out))
    found = set()
    for entry in m["index"]:
        found |= {json.loads(line)["image_id"] for line in (out / entry["path"]).read_text().splitlines()}
    return found


@pytest.mark.timeout(300)
def test_a_fifo_is_rejected_at_listing_and_never_opened(tmp_path):
    root = tmp_path / "in"
    root.mkdir()
    (root / "photo.png").write_bytes(_image(5))
    os.mkfifo(root / "stream.jpg")  # no writer ever: opening it for reading would wait forever
    out = tmp_path / "out"
    assert main(["build", str(root), "--output", str(out), *FAST]) == 0
    m = load_manifest(str(out))
    assert m["counts"] == {"input": 2, "published": 1, "rejected": 1, "duplicates": 0, "blocked": 0}
    assert m["rejects_by_reason"] == {"list:fifo": 1}
    [r] = _rejects(out)
    assert (r["source"], r["stage"], r["reason"]) == ("stream.jpg", "list", "fifo")


def test_a_symlink_out_of_the_root_is_not_followed(hostile):
    base, _root, out = hostile
    assert _id((base / "outside.png").read_bytes()) not in _published_ids(out)
    [r] = [r for r in _rejects(out) if r["source"] == "outside-link.png"]
    assert (r["stage"], r["reason"]) == ("list", "symlink_outside_root")


def test_dangling_and_looping_links_are_rejects_with_a_reason(hostile):
    _, _, out = hostile
    reasons = {r["source"]: (r["stage"], r["reason"]) for r in _rejects(out)}
    assert reasons["dangling.png"] == ("list", "dangling_symlink")
    assert reasons["loop-a.png"] == reasons["loop-b.png"] == reasons["sub/up"] == ("list", "symlink_loop")


def test_names_in_any_bytes_are_published(hostile):
    _, root, out = hostile
    published = _published_ids(out)
    raw = os.fsencode(str(root))
    for name in NAMES:
        with open(os.path.join(raw, name), "rb") as fh:
            assert _id(fh.read()) in published, name


def test_every_input_is_counted_with_stage_and_reason(hostile):
    _, _, out = hostile
    m = load_manifest(str(out))
    c = m["counts"]
    # plain + 3 odd names published; sub/same.png a duplicate; 5 listing rejects and notes.jpg
    assert c == {"input": 11, "published": 4, "rejected": 6, "duplicates": 1, "blocked": 0}
    assert c["input"] == c["published"] + c["rejected"] + c["duplicates"] + c["blocked"]
    assert m["rejects_by_reason"] == {"decode:not_an_image": 1, "list:dangling_symlink": 1,
                                      "list:symlink_loop": 3, "list:symlink_outside_root": 1}
    assert all(r["stage"] and r["reason"] for r in _rejects(out))


def test_no_absolute_path_nor_rejected_content_reaches_the_release(hostile):
    base, root, out = hostile
    needles = [os.fsencode(str(base)), os.fsencode(os.path.realpath(base)), SECRET[:16], b"hunter2"]
    for dirpath, _dirs, files in os.walk(out):
        for name in files:
            data = open(os.path.join(dirpath, name), "rb").read()
            for needle in needles:
                assert needle not in data, f"{needle!r} in {os.path.relpath(os.path.join(dirpath, name), out)}"
    for r in _rejects(out):
        assert not os.path.isabs(r["source"]) and "/tmp" not in r["detail"]
    [notes] = [r for r in _rejects(out) if r["source"] == "notes.jpg"]
    assert notes["reason"] == "not_an_image"
    # Parquet columns hold no source path either (the image path is the published name)
    for entry in load_manifest(str(out))["shards"]:
        if entry["format"] == "parquet":
            table = pq.read_table(out / entry["path"])
            assert all(p.startswith("sa_") for p in table.column("image").combine_chunks().field("path").to_pylist())
