"""A new output format is one module and one registry line: the toy JSON-lines format (tests/release/
toy_jsonl.py), registered here and nowhere else, is built by ``veilset build``, rewritten by takedown apply, read
back through the registry and passes the audit."""
from __future__ import annotations

import dataclasses
import json
import os

import pytest
from PIL import Image

from veilset.api import ledger_snapshot
from veilset.audit.findings import PASS
from veilset.audit.integrity import check_integrity
from veilset.audit.metadata import check_metadata
from veilset.audit.release import Release
from veilset.audit.takedowns import check_takedowns
from veilset.cli import main
from veilset.release import ids, registry, shards
from veilset.release.manifest import load_manifest
from veilset.takedown.apply import apply_pending
from veilset.takedown.ledger import Ledger, NewRequest
from tests.factories import published
from tests.imagegen import make_pattern
from tests.release import toy_jsonl

NOW = "2026-11-25T13:00:00Z"


@pytest.fixture(autouse=True)
def jsonl_registered():
    registry.register(toy_jsonl.FORMAT)  # the one registry line
    yield
    registry.unregister(toy_jsonl.FORMAT.name)


def test_write_read_round_trip(tmp_path):
    images = [published(i) for i in range(4)]
    written = shards.write_shard(str(tmp_path), 1, 2, ("jsonl",), images)
    assert [(f.format, f.path) for f in written] == [("index", "index/shard-00001-of-00002.jsonl"),
                                                     ("jsonl", "jsonl/shard-00001-of-00002.jsonl")]
    back = shards.read_shard(str(tmp_path), 1, 2, ("jsonl",))
    want = sorted(images, key=lambda im: im.image_id)
    assert [dataclasses.asdict(b) for b in back] == [dataclasses.asdict(w) for w in want]


def _inputs(folder) -> list[str]:
    folder.mkdir()
    paths = []
    for seed in range(6):
        path = folder / f"pattern-{seed}.png"
        Image.fromarray(make_pattern(48, 64, seed=seed)).save(path)
        paths.append(str(path))
    return paths


def _published_ids(root: str) -> set[str]:
    m = load_manifest(root)
    return {im.image_id for e in m["index"] for im in shards.read_shard(root, e["shard"], m["num_shards"],
                                                                          m["formats"])}


def test_build_take_down_read_back_and_audit(tmp_path):
    sources = _inputs(tmp_path / "in")
    root = str(tmp_path / "release")
    rc = main(["build", str(tmp_path / "in"), "--output", root, "--workers", "1", "--shards", "2",
               "--formats", "jsonl", "--face-detector", "none", "--plate-detector", "none", "--masks", "none"])
    assert rc == 0
    m = load_manifest(root)
    assert m["formats"] == ["jsonl"] and {e["format"] for e in m["shards"]} == {"jsonl"}
    assert sorted(os.listdir(root)) == [".veilset-release.json", "index", "jsonl", "manifest.json", "rejects.r000001.jsonl"]
    built = _published_ids(root)
    assert len(built) == len(sources)

    victim = sorted(built)[0]
    ledger = Ledger(str(tmp_path / "ledger.sqlite"))
    ledger.add_request(NewRequest(message_id="<r1@x>", sender="a@example.org", date_header="", source="t",
                                  state="received", image_ids=(victim,)))
    report = apply_pending(ledger, root, now=NOW, workers=1)
    assert report.removed == (victim,) and report.release_after == 2

    assert _published_ids(root) == built - {victim}
    shard = ids.shard_of(victim, 2)
    shard_file = os.path.join(root, registry.shard_path("jsonl", shard, 2, shards.listed_generation(root, shard)))
    if os.path.exists(shard_file):
        assert victim.encode() not in open(shard_file, "rb").read()
    assert [json.loads(open(os.path.join(root, "manifest.json")).read())["log"][0]["removed"]] == [[victim]]
    release = Release(root)
    results = [check_integrity(release), check_takedowns(release, ledger_snapshot(str(tmp_path / "ledger.sqlite"))), check_metadata(release)]
    for result in results:
        assert result.status == PASS, [f.line() for f in result.findings]
    assert results[0].stats["images"] == len(built) - 1
    assert results[2].stats["jpegs"] == len(built) - 1  # the audit read every JPEG out of the jsonl shards

    rel = next(e["path"] for e in load_manifest(root)["shards"] if e["format"] == "jsonl")
    with open(os.path.join(root, rel), "ab") as fh:
        fh.write(b"not json\n")
    findings = check_integrity(Release(root)).findings
    assert any(f.file == rel and "sha256" in f.message for f in findings)
    assert any(f.file == rel and "not JSON lines" in f.message for f in findings)


def test_unknown_format_is_refused_once_unregistered():
    registry.unregister("jsonl")
    with pytest.raises(ValueError, match="jsonl"):
        registry.validate_formats(["jsonl"])
    registry.register(toy_jsonl.FORMAT)
