from __future__ import annotations

import json
import os

from veilset.audit.findings import FAIL, INTEGRITY
from veilset.audit.integrity import check_integrity
from veilset.audit.release import Release
from veilset.release import registry, shards
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
