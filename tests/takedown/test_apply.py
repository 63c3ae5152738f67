"""Apply: only affected shards rewritten, removed bytes gone, manifest release+1 with log, crash safety, lock."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from veilset.release import ids, shards
from veilset.release.manifest import load_manifest
from veilset.takedown.apply import WORK_DIR, ApplyLocked, ReleaseLock, apply_pending
from veilset.takedown.ledger import Ledger, NewRequest
from tests.takedown.mails import image_id
from tests.takedown.releases import assert_gone, expected_files, make_release, release_ids, tree

NOW = "2026-11-25T13:00:00Z"


def add(ledger: Ledger, mid: str, image_ids, sender: str = "alice@example.org") -> int:
    rid, _ = ledger.add_request(NewRequest(message_id=mid, sender=sender, date_header="", source="t",
                                           state="received", image_ids=tuple(image_ids)))
    return rid


@pytest.fixture
def rel(tmp_path):
    root = str(tmp_path / "release")
    manifest, images = make_release(root, n=24, num_shards=4)
    return root, manifest, images


def test_apply_removes_only_from_affected_shards(rel, tmp_path):
    root, manifest, images = rel
    before = tree(root)
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    victims = [images[0], images[1]]
    unknown = image_id("not-in-release")
    rid = add(ledger, "<r1@x>", [v.image_id for v in victims] + [unknown])
    report = apply_pending(ledger, root, now=NOW)
    assert (report.release_before, report.release_after) == (1, 2)
    assert set(report.removed) == {v.image_id for v in victims} and report.not_found == (unknown,)
    touched = {ids.shard_of(v.image_id, 4) for v in victims}
    assert set(report.shards_rewritten) | set(report.shards_deleted) == touched

    after = tree(root)
    for path, digest in before.items():
        if path.startswith(("parquet/", "coco/", "sa1b/", "index/")):
            shard = int(path.rsplit("/", 1)[1].split("-")[1])
            if shard not in touched:
                assert after[path] == digest, f"untouched shard file changed: {path}"
            else:  # rewritten under the new release's generation; the old file is gone after the commit
                assert path not in after
    assert set(after) == expected_files(root), "stale, temp or unlisted files left in the release"
    assert not os.path.exists(os.path.join(root, WORK_DIR))
    assert_gone(root, [v.image_id for v in victims], [v.jpeg for v in victims])
    assert release_ids(root) == {im.image_id for im in images} - {v.image_id for v in victims}

    m = load_manifest(root)
    assert m["release"] == 2
    c = m["counts"]
    assert (c["published"], c["removed"]) == (22, 2)
    assert c["input"] == c["published"] + c["rejected"] + c["duplicates"] + c["blocked"] + c["removed"]
    (entry,) = m["log"]
    assert entry["request"] == "<r1@x>" and entry["release"] == 2 and entry["time"] == NOW
    assert sorted(entry["removed"]) == sorted(v.image_id for v in victims) and entry["not_found"] == [unknown]
    old = {e["path"]: e["sha256"] for e in manifest["shards"] + manifest["index"]}
    for s in entry["shards"]:
        assert s["old_sha256"] == old[s["path"]] == before[s["path"]]
        assert s["new_path"].endswith(".r000002" + s["path"][s["path"].rindex("."):])
        assert s["new_sha256"] == after.get(s["new_path"])
    for e in m["shards"] + m["index"]:
        assert after[e["path"]] == e["sha256"]

    row = ledger.request(rid)
    assert (row.state, row.applied_release) == ("applied", 2)
    assert ledger.blocked_image_ids() == {v.image_id for v in victims} | {unknown}  # not (yet) in: blocked too
    assert ledger.blocked_content_hashes() == {h for v in victims for h in (v.content_sha256, v.sha256)}
    # remaining images still read back complete from every format
    for e in m["index"]:
        for im in shards.read_shard(root, e["shard"], m["num_shards"], m["formats"]):
            assert im.jpeg == next(x.jpeg for x in images if x.image_id == im.image_id)


def test_emptied_shard_disappears_and_repeat_requests_are_already_removed(tmp_path):
    root = str(tmp_path / "r")
    _, images = make_release(root, n=6, num_shards=3, formats=("coco",))
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    shard0 = [im for im in images if ids.shard_of(im.image_id, 3) == 0]
    assert shard0
    add(ledger, "<r1@x>", [im.image_id for im in shard0])
    report = apply_pending(ledger, root, now=NOW)
    assert report.shards_deleted == (0,)
    m = load_manifest(root)
    assert all(e["shard"] != 0 for e in m["shards"] + m["index"])
    assert not os.path.exists(os.path.join(root, "images", "00000"))
    assert set(tree(root)) == expected_files(root)
    # the same IDs again: nothing to rewrite, no new release, receipt data says removed (earlier)
    rid = add(ledger, "<r2@x>", [shard0[0].image_id])
    report = apply_pending(ledger, root, now=NOW)
    assert report.release_after == 2 and load_manifest(root)["release"] == 2
    assert [(r.status, r.release) for r in ledger.request_ids(rid)] == [("removed", 2)]


def test_nothing_pending_is_a_no_op(rel, tmp_path):
    root, _, _ = rel
    before = tree(root)
    report = apply_pending(Ledger(str(tmp_path / "l.sqlite")), root)
    assert report.release_after == 1 and tree(root) == before


def test_review_and_quarantined_requests_are_not_applied(rel, tmp_path):
    root, _, images = rel
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    for k, state in enumerate(("review", "quarantined")):
        ledger.add_request(NewRequest(message_id=f"<{k}@x>", sender="a@b.org", date_header="", source="t",
                                      state=state, image_ids=(images[k].image_id,)))
    before = tree(root)
    apply_pending(ledger, root)
    assert tree(root) == before


def test_lock_prevents_concurrent_apply(rel, tmp_path):
    root, _, images = rel
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    add(ledger, "<r1@x>", [images[0].image_id])
    with ReleaseLock(root):
        with pytest.raises(ApplyLocked):
            apply_pending(ledger, root)
    assert apply_pending(ledger, root).release_after == 2


CRASH_POINTS = ["staged", "blocked", "journal", "moved:0", "moved:3", "deleted", "manifest", "ledger"]


class Crash(BaseException):
    pass


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_anywhere_then_rerun_completes(tmp_path, point):
    # reference: the same apply without a crash
    ref_root = str(tmp_path / "ref")
    _, images = make_release(ref_root)
    victims = [images[2].image_id, images[5].image_id, images[11].image_id]
    ref_ledger = Ledger(str(tmp_path / "ref.sqlite"))
    add(ref_ledger, "<r1@x>", victims)
    apply_pending(ref_ledger, ref_root, now=NOW)
    reference = tree(ref_root)

    root = str(tmp_path / "r")
    make_release(root)
    old = tree(root)
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    add(ledger, "<r1@x>", victims)

    def hook(stage: str) -> None:
        if stage == point:
            raise Crash(stage)

    with pytest.raises(Crash):
        apply_pending(ledger, root, hook=hook, now=NOW)
    visible = {k: v for k, v in tree(root).items() if not k.startswith(WORK_DIR + "/")}
    manifest_now = visible["manifest.json"]
    assert manifest_now in (old["manifest.json"], reference["manifest.json"])
    if point in ("staged", "blocked"):
        assert visible == old  # before the commit point nothing in the release changed
    # the blocklist is written before the release is touched, so a build can never resurrect them
    if point != "staged":
        assert ledger.blocked_image_ids() == set(victims)

    report = apply_pending(ledger, root, now=NOW)
    assert report.recovered
    assert tree(root) == reference
    assert ledger.request(1).state == "applied"
    assert ledger.blocked_image_ids() == set(victims)


def test_killed_process_leaves_a_recoverable_release(rel, tmp_path):
    """A real SIGKILL-like exit (os._exit, no cleanup) in the middle of the renames, then a rerun."""
    root, _, images = rel
    ledger_path = str(tmp_path / "l.sqlite")
    victims = [images[3].image_id, images[4].image_id]
    add(Ledger(ledger_path), "<r1@x>", victims)
    code = (
        "import os, sys\n"
        "from veilset.takedown.apply import apply_pending\n"
        "from veilset.takedown.ledger import Ledger\n"
        "def hook(stage):\n"
        "    if stage == 'moved:1':\n"
        "        os._exit(9)\n"
        f"apply_pending(Ledger({ledger_path!r}), {root!r}, hook=hook)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd(), timeout=120)
    assert proc.returncode == 9
    assert os.path.exists(os.path.join(root, WORK_DIR, "journal.json"))
    ledger = Ledger(ledger_path)
    report = apply_pending(ledger, root)
    assert report.recovered and load_manifest(root)["release"] == 2
    assert set(tree(root)) == expected_files(root)
    assert_gone(root, victims, [im.jpeg for im in images if im.image_id in victims])


def test_remote_release_and_bad_workers_are_refused(rel, tmp_path):
    with pytest.raises(ValueError, match="local release"):
        apply_pending(Ledger(str(tmp_path / "l.sqlite")), "gs://bucket/release")
    with pytest.raises(ValueError, match="--workers"):
        apply_pending(Ledger(str(tmp_path / "l.sqlite")), rel[0], workers=0)


def test_parallel_and_serial_apply_give_identical_releases(tmp_path):
    roots = []
    for workers in (1, 2):
        root = str(tmp_path / f"r{workers}")
        _, images = make_release(root, n=24, num_shards=4)
        ledger = Ledger(str(tmp_path / f"l{workers}.sqlite"))
        add(ledger, "<r1@x>", [images[k].image_id for k in (0, 1, 2, 3, 7)])
        report = apply_pending(ledger, root, now=NOW, workers=workers)
        assert len(report.shards_rewritten) + len(report.shards_deleted) >= 2
        roots.append(root)
    assert tree(roots[0]) == tree(roots[1])


@pytest.mark.parametrize("formats", [("parquet",), ("sa1b",), ("coco", "sa1b")])
def test_apply_on_every_format_combination(tmp_path, formats):
    root = str(tmp_path / "r")
    _, images = make_release(root, n=10, num_shards=2, formats=formats)
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    victim = images[4]
    add(ledger, "<r1@x>", [victim.image_id, images[5].image_id])
    apply_pending(ledger, root, now=NOW, workers=1)  # in-process path (the other tests use worker processes)
    assert set(tree(root)) == expected_files(root)
    assert_gone(root, [victim.image_id, images[5].image_id], [victim.jpeg, images[5].jpeg])
    m = load_manifest(root)
    kept = {im.image_id for e in m["index"] for im in shards.read_shard(root, e["shard"], m["num_shards"], m["formats"])}
    assert kept == {im.image_id for im in images} - {victim.image_id, images[5].image_id}


def test_an_id_not_yet_in_the_release_is_blocked_in_every_later_build(tmp_path):
    from PIL import Image

    from veilset.cli import main
    from tests.imagegen import make_pattern

    root = str(tmp_path / "release")
    make_release(root, n=6, num_shards=2)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(make_pattern(48, 64, seed=99)).save(photos / "later.png")
    future = ids.image_id_for(ids.sha256_hex((photos / "later.png").read_bytes()))
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    add(ledger, "<r1@x>", [future])
    report = apply_pending(ledger, root, now=NOW)
    assert report.not_found == (future,) and report.removed == () and report.release_after == 2
    assert future in ledger.blocked_image_ids()
    assert load_manifest(root)["log"][-1]["not_found"] == [future]
    # the photo arrives later: a rebuild into the release keeps it out, without --ledger
    flags = ["--workers", "1", "--face-detector", "none", "--plate-detector", "none", "--masks", "none"]
    assert main(["build", str(photos), "--output", root, *flags]) == 0
    m = load_manifest(root)
    assert m["release"] == 3 and m["counts"]["blocked"] == 1 and m["counts"]["published"] == 0
    # and a fresh build with the ledger does too
    assert main(["build", str(photos), "--output", str(tmp_path / "fresh"), *flags,
                 "--ledger", str(tmp_path / "l.sqlite")]) == 0
    assert load_manifest(str(tmp_path / "fresh"))["counts"]["blocked"] == 1


def test_log_entries_are_chained_by_hash_across_applies(rel, tmp_path):
    from veilset.release.log import chain_problems, entry_sha256

    root, _, images = rel
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    add(ledger, "<r1@x>", [images[0].image_id])
    add(ledger, "<r2@x>", [images[1].image_id])
    apply_pending(ledger, root, now=NOW)  # two requests in one apply: two entries
    add(ledger, "<r3@x>", [images[2].image_id])
    apply_pending(ledger, root, now=NOW)
    log = load_manifest(root)["log"]
    assert [e["request"] for e in log] == ["<r1@x>", "<r2@x>", "<r3@x>"]
    assert log[0]["prev_sha256"] is None
    assert [e["prev_sha256"] for e in log[1:]] == [entry_sha256(log[0]), entry_sha256(log[1])]
    assert chain_problems(log) == ([], 0)
    assert load_manifest(root)["log_head_sha256"] == entry_sha256(log[2])  # the head is bound too
    log[0]["time"] = "2020-01-01T00:00:00Z"
    assert len(chain_problems(log)[0]) == 1
