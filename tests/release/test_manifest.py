import json

import pytest

from veilset.release import layout, manifest
from veilset.release.canonical import dumps_json
from veilset.release.log import LogEntry, ShardChange
from veilset.release.records import ShardFile

SHA = "0" * 64


def _files():
    return [ShardFile("parquet", 1, "parquet/shard-00001-of-00002.parquet", SHA, 2),
            ShardFile("index", 0, "index/shard-00000-of-00002.jsonl", SHA, 1),
            ShardFile("index", 1, "index/shard-00001-of-00002.jsonl", SHA, 2),
            ShardFile("parquet", 0, "parquet/shard-00000-of-00002.parquet", SHA, 1)]


def _built(**kw):
    args = dict(created="2026-11-25T12:00:00Z", num_shards=2, formats=("parquet",), files=_files(),
                counts=manifest.Counts(input=5, published=3, rejected=1, duplicates=1, blocked=0),
                rejects_by_reason={"decode:truncated": 1}, config={"workers": 1}, models={"masks": None})
    args.update(kw)
    return manifest.Manifest.for_build(**args)


def test_for_build_sorts_files_and_writes_the_documented_json(tmp_path):
    m = _built()
    assert [f.shard for f in m.shards] == [0, 1] and [f.format for f in m.index] == ["index", "index"]
    manifest.write(str(tmp_path), m)
    d = json.loads((tmp_path / layout.MANIFEST_NAME).read_bytes())
    assert list(d) == sorted(d)  # canonical: sorted keys
    assert set(d) == {"format_version", "release", "created", "num_shards", "formats", "counts", "rejects_by_reason",
                      "shards", "index", "rejects", "config", "models", "log"}
    assert d["counts"] == {"input": 5, "published": 3, "rejected": 1, "duplicates": 1, "blocked": 0}
    assert (d["release"], d["rejects"], d["log"]) == (1, "rejects.jsonl", [])
    assert (tmp_path / layout.MANIFEST_NAME).read_bytes() == dumps_json(d)
    assert manifest.read(str(tmp_path)) == m


def test_counts_must_add_up():
    with pytest.raises(RuntimeError, match="conservation"):
        _built(counts=manifest.Counts(input=6, published=3, rejected=1, duplicates=1, blocked=0))
    with pytest.raises(RuntimeError, match="conservation"):  # published must be what the index files hold
        _built(counts=manifest.Counts(input=5, published=2, rejected=2, duplicates=1, blocked=0))


def test_after_takedown_replaces_touched_files_and_logs():
    m = _built()
    new_index = ShardFile("index", 1, "index/shard-00001-of-00002.r000002.jsonl", "1" * 64, 1)
    entry = LogEntry(2, "t", "<r@x>", ("sa_" + "a" * 32,),
                     (ShardChange("index/shard-00001-of-00002.jsonl", SHA, "1" * 64, new_index.path),), 7, ())
    after = m.after_takedown(touched={1}, rewritten=[new_index], removed=1, entries=[entry])
    assert after.release == 2 and after.index == (m.index[0], new_index)
    assert after.key(1).generation == 2 and after.key(0).generation == 0
    assert [f.shard for f in after.shards] == [0]  # the parquet file of shard 1 was not rewritten: gone
    assert after.counts.to_dict() == {"input": 5, "published": 2, "rejected": 1, "duplicates": 1, "blocked": 0,
                                      "removed": 1}
    assert after.counts.conserved() and after.log == (entry,)
    assert manifest.Manifest.from_dict(json.loads(after.to_bytes())) == after


def test_round_trip_keeps_every_byte_of_a_takedown_log():
    d = json.loads(_built().to_bytes())
    d["counts"]["removed"] = 0
    d["log"] = [{"release": 2, "time": "t", "request": "<r@x>", "removed": [], "shards": []},  # older entry
                {"release": 3, "time": "t", "request": "<s@x>", "request_id": 2, "removed": ["sa_" + "b" * 32],
                 "not_found": [], "shards": [{"path": "p", "old_sha256": SHA, "new_sha256": None}]}]
    assert manifest.Manifest.from_dict(d).to_bytes() == dumps_json(d)


def test_the_log_head_is_written_with_the_log_and_an_older_manifest_keeps_its_bytes():
    from veilset.release.log import entry_sha256

    d = json.loads(_built().to_bytes())
    assert manifest.LOG_HEAD not in d  # no log, no head
    d["counts"]["removed"] = 0
    d["log"] = [{"release": 2, "time": "t", "request": "<r@x>", "removed": [], "shards": []}]
    old = manifest.Manifest.from_dict(d)  # written before the head was bound: read back byte for byte
    assert old.to_bytes() == dumps_json(d) and not old.log_head_bound
    after = old.after_takedown(touched=set(), rewritten=[], removed=0, entries=old.log)
    assert json.loads(after.to_bytes())[manifest.LOG_HEAD] == entry_sha256(d["log"][0])  # the next release binds it
    d[manifest.LOG_HEAD] = entry_sha256(d["log"][0])
    assert manifest.Manifest.from_dict(d).to_bytes() == dumps_json(d)


def test_version_and_missing_manifest_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a veilset release"):
        manifest.read(str(tmp_path))
    (tmp_path / layout.MANIFEST_NAME).write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        manifest.load_manifest(str(tmp_path))


def test_swap_in_is_idempotent(tmp_path):
    stage, root = tmp_path / "stage", tmp_path / "root"
    root.mkdir()
    manifest.write(str(stage), _built())
    assert manifest.swap_in(str(stage), str(root)) is True
    assert manifest.swap_in(str(stage), str(root)) is False
    assert manifest.read(str(root)) == _built()
