from __future__ import annotations

import io
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from veilset.audit.findings import FAIL, PASS, TAKEDOWNS
from veilset.audit.release import Release
from veilset.api import ledger_snapshot
from veilset.audit.takedowns import check_takedowns
from veilset.release import ids, layout, registry, shards
from tests.audit.conftest import coco_path, load_json, row_of, save_json


def _check(root: str, ledger: str):
    return check_takedowns(Release(root), ledger_snapshot(ledger))


def test_good_release_honours_the_ledger(built):
    result = _check(built.root, built.ledger)
    assert result.status == PASS, [f.line() for f in result.findings]
    assert result.stats["blocked_ids"] == 1


def test_reinserted_id_in_coco_and_images_is_found(built, copy_release):
    root = copy_release()
    donor = built.image_ids["coffee"]
    path = coco_path(root, donor)
    doc = load_json(path)
    entry = dict(next(im for im in doc["images"] if im["image_id"] == donor))
    shard = ids.shard_of(built.removed_id, 2)
    generation = shards.listed_generation(root, shard)
    entry.update(image_id=built.removed_id, id=ids.int_id(built.removed_id),
                 file_name=layout.image_path(built.removed_id, shard, generation))
    doc["images"].append(entry)
    save_json(path, doc)
    os.makedirs(os.path.join(root, layout.image_dir(shard, generation)), exist_ok=True)
    shutil.copyfile(os.path.join(root, row_of(root, donor)["file_name"]), os.path.join(root, entry["file_name"]))
    result = _check(root, built.ledger)
    assert result.status == FAIL
    rel_coco = os.path.relpath(path, root).replace(os.sep, "/")
    assert any(f.file == rel_coco and f.image_id == built.removed_id for f in result.findings)
    assert any(f.file == entry["file_name"] and "file name" in f.message for f in result.findings)
    assert all(f.check == TAKEDOWNS for f in result.findings)


def test_an_image_that_shares_a_removed_images_integer_id_is_not_a_leak(built, copy_release):
    # integer ids are 48-bit: another image may own the removed one's (ids.clashes); its string ID decides
    root = copy_release()
    donor = built.image_ids["coffee"]
    path = coco_path(root, donor)
    doc = load_json(path)
    twin = built.removed_id[:15] + ("0" if built.removed_id[15] != "0" else "1") + built.removed_id[16:]
    entry = next(im for im in doc["images"] if im["image_id"] == donor)
    for ann in doc["annotations"]:
        if ann["image_id"] == entry["id"]:
            ann["image_id"] = ids.int_id(twin)
    entry.update(image_id=twin, id=ids.int_id(twin))
    save_json(path, doc)
    assert ids.int_id(twin) == ids.int_id(built.removed_id)
    result = _check(root, built.ledger)
    assert result.status == PASS, [f.line() for f in result.findings]
    entry["image_id"] = "renamed"  # without its own string ID the removed image's integer is a leak again
    save_json(path, doc)
    assert any("COCO image id" in f.message for f in _check(root, built.ledger).findings)


def test_reinserted_parquet_row_is_found_despite_compression(built, copy_release):
    root = copy_release()
    shard = row_of(root, built.image_ids["coffee"])["shard"]
    rel = registry.shard_path("parquet", shard, 2, shards.listed_generation(root, shard))
    path = os.path.join(root, rel)
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows.append(dict(rows[0], image_id=built.removed_id))
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), sink, compression="zstd")
    open(path, "wb").write(sink.getvalue())
    result = _check(root, built.ledger)
    assert any(f.file == rel and f.image_id == built.removed_id for f in result.findings)


def test_removed_content_hash_in_any_file_is_found(built, copy_release):
    root = copy_release()
    with open(built.inputs["chelsea"], "rb") as fh:
        source_sha = ids.sha256_hex(fh.read())
    rejects = load_json(os.path.join(root, "manifest.json"))["rejects"]
    open(os.path.join(root, rejects), "a").write(
        '{"source": "x", "stage": "ingest", "reason": "dup", "detail": "%s"}\n' % source_sha)
    result = _check(root, built.ledger)
    assert any(f.file == rejects for f in result.findings)


def test_the_manifest_log_may_name_removed_ids_but_nothing_else_may(built, copy_release):
    root = copy_release()
    manifest = load_json(os.path.join(root, "manifest.json"))
    manifest["log"] = [{"release": 2, "time": "t", "request": "r", "removed": [built.removed_id], "shards": []}]
    save_json(os.path.join(root, "manifest.json"), manifest)
    assert _check(root, built.ledger).status == PASS
    manifest["config"]["note"] = f"was {built.removed_id}"
    save_json(os.path.join(root, "manifest.json"), manifest)
    result = _check(root, built.ledger)
    assert [f.file for f in result.findings] == ["manifest.json"]


def test_missing_ledger_file_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no ledger file"):
        ledger_snapshot(str(tmp_path / "nope.sqlite"))


def test_release_after_a_real_takedown_passes_and_restoring_an_old_shard_fails(taken_down, tmp_path):
    manifest = load_json(os.path.join(taken_down.root, "manifest.json"))
    assert manifest["log"] and taken_down.removed_id in manifest["log"][-1]["removed"]
    result = _check(taken_down.root, taken_down.ledger)
    assert result.status == PASS, [f.line() for f in result.findings]
    assert result.stats["blocked_ids"] == 2
    # An operator restores release 1's Parquet shard from a backup: the removed image is back.
    root = tmp_path / "restored"
    shutil.copytree(taken_down.root, root)
    shard = ids.shard_of(taken_down.removed_id, 2)
    old = registry.shard_path("parquet", shard, 2, shards.listed_generation(taken_down.before, shard))
    rel = registry.shard_path("parquet", shard, 2, shards.listed_generation(str(root), shard))
    shutil.copyfile(os.path.join(taken_down.before, old), os.path.join(root, rel))
    result = _check(str(root), taken_down.ledger)
    assert result.status == FAIL
    hits = [f for f in result.findings if f.image_id == taken_down.removed_id]
    assert {f.file for f in hits} == {rel}
    assert any("published again" in f.message for f in hits)
    assert any("hash to a removed image" in f.message for f in hits)


def test_a_removed_image_put_back_consistently_is_found_by_the_takedowns_check_only(taken_down, tmp_path):
    """Index row, every format's copy, the manifest's hashes, per-file counts and counts all consistent: integrity
    passes; the takedowns check names the image in every file, from the ledger and from the release log alone."""
    from veilset.audit.findings import INTEGRITY
    from veilset.audit.runner import run_audit
    from tests.audit.tamper import reinsert

    root = str(tmp_path / "reinserted")
    shutil.copytree(taken_down.root, root)
    reinsert(root, taken_down.before, taken_down.removed_id)
    report = run_audit(root, ledger=ledger_snapshot(taken_down.ledger), checks=[INTEGRITY, TAKEDOWNS])
    assert report.result(INTEGRITY).status == PASS, [f.line() for f in report.result(INTEGRITY).findings]
    assert report.result(TAKEDOWNS).status == FAIL and not report.passed
    hits = [f for f in report.result(TAKEDOWNS).findings if f.image_id == taken_down.removed_id]
    formats = {f.file.split("/")[0] for f in hits}
    assert {"index", "parquet", "coco", "images", "sa1b"} <= formats, formats
    assert any("published again" in f.message for f in hits)
    without_ledger = check_takedowns(Release(root), None)  # the release log alone names it
    assert {f.image_id for f in without_ledger.findings} == {taken_down.removed_id}


def test_a_log_removal_the_ledger_does_not_know_is_found(taken_down, tmp_path):
    """With --ledger: every ID the release log says was removed must be one the ledger removed."""
    root = str(tmp_path / "forged-log")
    shutil.copytree(taken_down.root, root)
    manifest = load_json(os.path.join(root, "manifest.json"))
    forged = "sa_" + "e" * 32
    manifest["log"][-1]["removed"].append(forged)
    save_json(os.path.join(root, "manifest.json"), manifest)
    assert check_takedowns(Release(root), None).status == PASS  # without the ledger nothing contradicts it
    result = _check(root, taken_down.ledger)
    assert [(f.file, f.image_id) for f in result.findings] == [("manifest.json", forged)]
    assert "ledger has no removal" in result.findings[0].message
