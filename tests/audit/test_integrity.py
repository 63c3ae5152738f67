from __future__ import annotations

import json
import os
import tarfile

from pycocotools.coco import COCO

from veilset.audit.findings import FAIL, INTEGRITY
from veilset.audit.integrity import check_integrity
from veilset.audit.release import Release
from veilset.release import ids, registry, shards
from tests.audit.conftest import index_rows, load_json, save_json


def _check(root: str):
    return check_integrity(Release(root))


def test_good_release_is_intact(built):
    result = _check(built.root)
    assert result.status == "pass", [f.line() for f in result.findings]


def test_corrupted_shard_byte_is_found(copy_release):
    root = copy_release()
    rel = load_json(os.path.join(root, "manifest.json"))["shards"][0]["path"]
    path = os.path.join(root, rel)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    result = _check(root)
    assert result.status == FAIL
    assert any(f.file == rel and "sha256" in f.message for f in result.findings)
    assert all(f.check == INTEGRITY for f in result.findings)


def test_unlisted_and_temporary_files_are_found(copy_release):
    root = copy_release()
    open(os.path.join(root, "parquet", ".shard-00000-of-00002.parquet.tmp-0123abcd"), "wb").write(b"partial")
    open(os.path.join(root, "notes.txt"), "w").write("hello")
    result = _check(root)
    messages = {f.file: f.message for f in result.findings}
    assert "temporary" in messages["parquet/.shard-00000-of-00002.parquet.tmp-0123abcd"]
    assert "not listed" in messages["notes.txt"]


def test_missing_image_and_index_disagreement_are_found(copy_release):
    root = copy_release()
    rows = index_rows(root)
    os.unlink(os.path.join(root, rows[0]["file_name"]))
    idx_rel = registry.shard_path("index", rows[1]["shard"], 2, shards.listed_generation(root, rows[1]["shard"]))
    lines = [json.loads(l) for l in open(os.path.join(root, idx_rel))]
    for line in lines:
        if line["image_id"] == rows[1]["image_id"]:
            line["num_masks"] += 1
    open(os.path.join(root, idx_rel), "w").write("".join(json.dumps(l) + "\n" for l in lines))
    result = _check(root)
    assert any(f.file == rows[0]["file_name"] and f.image_id == rows[0]["image_id"] and "missing" in f.message
               for f in result.findings)
    assert any(f.image_id == rows[1]["image_id"] and "masks, index says" in f.message for f in result.findings)
    assert any(f.file == idx_rel and "sha256" in f.message for f in result.findings)


def test_counts_that_do_not_add_up_are_found(copy_release):
    root = copy_release()
    manifest = load_json(os.path.join(root, "manifest.json"))
    manifest["counts"]["input"] += 1
    save_json(os.path.join(root, "manifest.json"), manifest)
    result = _check(root)
    assert any(f.file == "manifest.json" and "do not add up" in f.message for f in result.findings)


def test_removed_counter_must_match_the_takedown_log(copy_release):
    root = copy_release()
    manifest = load_json(os.path.join(root, "manifest.json"))
    manifest["counts"]["removed"] = 1
    manifest["counts"]["input"] += 1
    save_json(os.path.join(root, "manifest.json"), manifest)
    result = _check(root)
    assert any("counts.removed" in f.message for f in result.findings)


def test_a_real_release_has_integer_ids_every_tool_holds(built):
    """The COCO shards of a real build load in pycocotools, every id is an integer below 2**53 that follows
    ``release.ids``, and the SA-1B JSONs carry SA-1B's integer image_id with the string ID beside it."""
    manifest = load_json(os.path.join(built.root, "manifest.json"))
    by_id = {r["image_id"]: r for r in index_rows(built.root)}
    masks = 0
    for entry in (e for e in manifest["shards"] if e["format"] == "coco"):
        coco = COCO(os.path.join(built.root, entry["path"]))
        for img in coco.loadImgs(coco.getImgIds()):
            assert img["id"] == ids.int_id(img["image_id"]) < 2**48
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
            assert [a["id"] for a in anns] == [ids.annotation_id(img["image_id"], k) for k in range(len(anns))]
            assert len(anns) == by_id[img["image_id"]]["num_masks"]
            for ann in anns:
                assert 0 <= ann["id"] < 2**53 and coco.annToMask(ann).sum() == ann["area"]
            masks += len(anns)
    assert masks > 0
    for entry in (e for e in manifest["shards"] if e["format"] == "sa1b"):
        with tarfile.open(os.path.join(built.root, entry["path"])) as tar:
            for info in (i for i in tar if i.name.endswith(".json")):
                image = json.load(tar.extractfile(info))["image"]
                assert image["veilset_id"] == info.name[:-5] and image["image_id"] == ids.int_id(info.name[:-5])


def _tamper_coco(root: str, change, images_with_masks: int = 1) -> str:
    rel = next(e["path"] for e in load_json(os.path.join(root, "manifest.json"))["shards"] if e["format"] == "coco"
               and len({a["image_id"] for a in load_json(os.path.join(root, e["path"]))["annotations"]})
               >= images_with_masks)
    doc = load_json(os.path.join(root, rel))
    change(doc)
    save_json(os.path.join(root, rel), doc)
    return rel


def test_old_scheme_or_repeated_ids_are_found(copy_release):
    root = copy_release()
    old = {}

    def old_scheme(doc):  # the annotation ids releases had before: int_id * 10000 + k (above 2**53)
        img = next(i for i in doc["images"] if any(a["image_id"] == i["id"] for a in doc["annotations"]))
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        for k, a in enumerate(anns):
            a["id"] = img["id"] * 10_000 + k
        old["image_id"] = img["image_id"]

    rel = _tamper_coco(root, old_scheme)
    found = _check(root).findings
    assert any(f.file == rel and f.image_id == old["image_id"] and "ids.annotation_id" in f.message for f in found)

    root = copy_release()

    def repeat(doc):  # the second image's first mask gets the first image's first mask's id
        first = doc["annotations"][0]
        second = next(a for a in doc["annotations"] if a["image_id"] != first["image_id"])
        second["id"] = first["id"]
        doc["images"][1]["id"] = doc["images"][0]["id"]

    rel = _tamper_coco(root, repeat, images_with_masks=2)
    messages = [f.message for f in _check(root).findings if f.file == rel]
    assert any("COCO image id" in m and "used twice" in m for m in messages), messages
    assert any("annotation id" in m and "used twice in its shard file" in m for m in messages), messages


def test_fingerprints_in_the_index_are_checked_against_the_published_pixels(built, copy_release):
    assert all(len(r["pdq"]) == 64 and len(r["pixels_sha256"]) == 64 for r in index_rows(built.root))
    root = copy_release()
    rows = index_rows(root)
    idx_rel = registry.shard_path("index", rows[0]["shard"], 2, shards.listed_generation(root, rows[0]["shard"]))
    lines = [json.loads(l) for l in open(os.path.join(root, idx_rel))]
    for line in lines:
        if line["image_id"] == rows[0]["image_id"]:
            line["pdq"] = "0" * 64  # a forged hash would let copies of it past every later build
            line["pixels_sha256"] = "f" * 64
    open(os.path.join(root, idx_rel), "w").write("".join(json.dumps(l) + "\n" for l in lines))
    found = [f for f in _check(root).findings if f.image_id == rows[0]["image_id"]]
    assert any("PDQ hash" in f.message and "0" * 64 in f.message for f in found)
    assert any("pixels_sha256" in f.message for f in found)
