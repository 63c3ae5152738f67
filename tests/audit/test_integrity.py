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


# ------------------------------------------------------------ tampered files whose hashes were updated in the manifest
def _audit_integrity(root: str):
    from veilset.audit.runner import run_audit

    report = run_audit(root, checks=[INTEGRITY])
    assert not report.passed
    return report.result(INTEGRITY)


def test_an_index_entry_pointing_to_the_wrong_shard_is_found(built, copy_release):
    from tests.audit.tamper import rewrite_listed

    root = copy_release()
    iid = built.image_ids["coffee"]
    shard = ids.shard_of(iid, 2)
    rel = registry.shard_path("index", shard, 2, shards.listed_generation(root, shard))
    lines = [json.loads(l) for l in open(os.path.join(root, rel))]
    for line in lines:
        if line["image_id"] == iid:
            line["shard"] = 1 - shard
    rewrite_listed(root, rel, "".join(json.dumps(l) + "\n" for l in lines).encode())
    result = _audit_integrity(root)
    assert not any("sha256" in f.message for f in result.findings)
    assert any(f.file == rel and f.image_id == iid and f"belongs to shard {shard}" in f.message
               for f in result.findings), [f.line() for f in result.findings]


def test_a_truncated_coco_mask_shard_is_found(built, copy_release):
    from tests.audit.tamper import rewrite_listed

    root = copy_release()
    rel = next(e["path"] for e in load_json(os.path.join(root, "manifest.json"))["shards"] if e["format"] == "coco")
    data = open(os.path.join(root, rel), "rb").read()
    rewrite_listed(root, rel, data[: len(data) // 2])
    result = _audit_integrity(root)
    assert not any("sha256" in f.message for f in result.findings)
    assert any(f.file == rel and f.check == INTEGRITY for f in result.findings), [f.line() for f in result.findings]


def test_a_truncated_sa1b_json_member_is_found(built, copy_release):
    import io

    from tests.audit.tamper import rewrite_listed

    root = copy_release()
    iid = built.image_ids["astronaut"]
    shard = ids.shard_of(iid, 2)
    rel = registry.shard_path("sa1b", shard, 2, shards.listed_generation(root, shard))
    with tarfile.open(os.path.join(root, rel)) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for m, data in members:
            if m.name == f"{iid}.json":
                data = data[: len(data) // 2]
                m.size = len(data)
            tar.addfile(m, io.BytesIO(data))
    rewrite_listed(root, rel, out.getvalue())
    result = _audit_integrity(root)
    assert not any("sha256" in f.message for f in result.findings)
    assert any(f.file == f"{rel}:{iid}.json" and f.image_id == iid and "unreadable SA-1B JSON" in f.message
               for f in result.findings), [f.line() for f in result.findings]


# ------------------------------------------------------------------------------------------ the release log's chain
def _with_log(root: str, entries: list[dict]) -> None:
    manifest = load_json(os.path.join(root, "manifest.json"))
    removed = sum(len(e["removed"]) for e in entries)
    manifest["counts"]["input"] += removed - manifest["counts"].get("removed", 0)
    manifest["counts"]["removed"] = removed
    manifest["log"] = entries
    save_json(os.path.join(root, "manifest.json"), manifest)


def _chained_log(n: int) -> list[dict]:
    from veilset.release.log import entry_for_request

    entries, previous = [], None
    for k in range(n):
        previous = entry_for_request(release=k + 2, time=f"2026-11-2{k}T10:00:00Z", request=f"<r{k}@x>",
                                     request_id=k + 1, removed=[f"sa_{k:032x}"], not_found=[], num_shards=2,
                                     old_sha256={}, new_sha256={}, previous=previous)
        entries.append(previous.to_dict())
    return entries


def _log_findings(root: str) -> list:
    return [f for f in _check(root).findings if f.file == "manifest.json" and "log" in f.message]


def test_a_chained_log_passes_and_says_so(copy_release):
    root = copy_release()
    _with_log(root, _chained_log(3))
    result = _check(root)
    assert result.status == "pass", [f.line() for f in result.findings]
    assert "log chained (3 entries)" in result.message


def test_an_edited_log_entry_breaks_the_chain(copy_release):
    root = copy_release()
    entries = _chained_log(3)
    entries[1]["removed"] = ["sa_" + "f" * 32]
    _with_log(root, entries)
    [finding] = _log_findings(root)
    assert "log entry 2: prev_sha256" in finding.message and "edited" in finding.message


def test_a_deleted_log_entry_breaks_the_chain(copy_release):
    root = copy_release()
    entries = _chained_log(3)
    del entries[0]
    _with_log(root, entries)  # counts adjusted too: only the chain can tell
    [finding] = _log_findings(root)
    assert "log entry 0: prev_sha256" in finding.message and "first entry must have none" in finding.message
    entries = _chained_log(3)
    del entries[1]
    _with_log(root, entries)
    [finding] = _log_findings(root)
    assert "log entry 1: prev_sha256" in finding.message


def test_a_log_written_before_chaining_is_information_not_a_finding(copy_release):
    root = copy_release()
    entries = _chained_log(2)
    for e in entries:
        del e["prev_sha256"]
    _with_log(root, entries)
    result = _check(root)
    assert result.status == "pass", [f.line() for f in result.findings]
    assert "log not chained (written before chaining): 2 of 2 entries" in result.message
    entries = _chained_log(2)  # chained, then an entry stripped of its link: a finding
    del entries[1]["prev_sha256"]
    _with_log(root, entries)
    [finding] = _log_findings(root)
    assert "log entry 1 has no prev_sha256" in finding.message


def _with_bound_log(root: str, entries: list[dict]) -> None:
    """The log as the writers leave it: with the manifest's log_head_sha256."""
    from veilset.release.log import entry_sha256

    _with_log(root, entries)
    manifest = load_json(os.path.join(root, "manifest.json"))
    manifest["log_head_sha256"] = entry_sha256(entries[-1])
    save_json(os.path.join(root, "manifest.json"), manifest)


def test_the_manifest_binds_the_log_head(copy_release):
    root = copy_release()
    entries = _chained_log(3)
    _with_bound_log(root, entries)
    result = _check(root)
    assert result.status == "pass", [f.line() for f in result.findings]
    assert "log chained (3 entries); log head bound" in result.message
    manifest = load_json(os.path.join(root, "manifest.json"))
    manifest["log"][2]["time"] = "2020-01-01T00:00:00Z"  # the last entry edited, the head left as it was
    save_json(os.path.join(root, "manifest.json"), manifest)
    [finding] = _log_findings(root)
    assert finding.check == "integrity"
    assert "log_head_sha256" in finding.message and "last log entry (2)" in finding.message
    manifest["log"] = manifest["log"][:2]  # the last entry deleted: the chain cannot tell, the head can
    save_json(os.path.join(root, "manifest.json"), manifest)
    [finding] = [f for f in _log_findings(root) if "log_head_sha256" in f.message]  # (and the counts)
    assert "last log entry (1)" in finding.message


def test_a_manifest_without_a_log_head_is_a_note(copy_release):
    root = copy_release()
    _with_log(root, _chained_log(2))  # a release written before log_head_sha256
    result = _check(root)
    assert result.status == "pass", [f.line() for f in result.findings]
    assert "log head not bound (manifest written before log_head_sha256)" in result.message


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
