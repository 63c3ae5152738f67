"""Each step of takedown apply driven on its own: plan (reads only) -> stage (writes only under .takedown/) ->
commit (blocklist, journal, roll forward) -> record (ledger applied, work folder gone)."""
from __future__ import annotations

import json
import os

import pytest

from veilset.release import ids, manifest, shards
from veilset.release.format import ShardKey
from veilset.takedown import apply as A
from veilset.takedown.ledger import Ledger, NewRequest
from tests.takedown.mails import image_id
from tests.takedown.releases import make_release, tree

NOW = "2026-11-25T13:00:00Z"


def _add(ledger: Ledger, mid: str, image_ids) -> int:
    rid, _ = ledger.add_request(NewRequest(message_id=mid, sender="alice@example.org", date_header="", source="t",
                                           state="received", image_ids=tuple(image_ids)))
    return rid


@pytest.fixture
def setup(tmp_path):
    root = str(tmp_path / "release")
    _, images = make_release(root, n=12, num_shards=3)
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    victims = [images[0].image_id, images[1].image_id]
    _add(ledger, "<r1@x>", victims + [image_id("not-in-release")])
    return root, ledger, images, victims


def _visible(root: str) -> dict[str, str]:
    return {k: v for k, v in tree(root).items() if not k.startswith(A.WORK_DIR + "/")}


def test_plan_reads_only_and_groups_the_images_by_shard(setup):
    root, ledger, _, victims = setup
    before = tree(root)
    p = A.plan(ledger, root, manifest.read(root))
    assert tree(root) == before and ledger.request(1).state == "received"
    assert p.release_before == 1 and p.removed == tuple(sorted(victims))
    assert p.gone == {s: frozenset(v for v in victims if ids.shard_of(v, 3) == s)
                      for s in sorted({ids.shard_of(v, 3) for v in victims})}
    (out,) = p.outcomes
    assert [r.image_id for r in out.removed] == sorted(victims) and out.not_found == (image_id("not-in-release"),)


def test_stage_writes_only_under_the_work_folder(setup):
    root, ledger, images, victims = setup
    before = tree(root)
    current = manifest.read(root)
    journal = A.stage(root, current, A.plan(ledger, root, current), now=NOW)
    assert _visible(root) == before  # the release is untouched
    staged = os.path.join(root, A.WORK_DIR, A.STAGE)
    assert sorted(journal.moves) == sorted(
        rel for rel in tree(staged) if rel != manifest.MANIFEST_NAME)
    for shard in journal.rewritten:  # staged bytes = a fresh write of what the shard keeps, as release 2's files
        keep = [im for im in images if ids.shard_of(im.image_id, 3) == shard and im.image_id not in victims]
        for rel, data in shards.payloads(ShardKey(shard, 3, 2), current.formats, keep).items():
            assert open(os.path.join(staged, rel), "rb").read() == data
    # after the commit every file of the touched shards' old generation goes, the removed JPEGs with them
    assert {f"images/{ids.shard_of(v, 3):05d}/{v}.jpg" for v in victims} <= set(journal.deletes)
    new = manifest.read(staged)
    assert new.release == 2 and new.counts.removed == 2 and new.log[0].removed == tuple(sorted(victims))


def test_commit_rolls_forward_and_record_finishes(setup):
    root, ledger, _, victims = setup
    current = manifest.read(root)
    journal = A.stage(root, current, A.plan(ledger, root, current), now=NOW)
    A.commit(ledger, root, journal, lambda _s: None)
    assert ledger.blocked_image_ids() == set(victims) | {image_id("not-in-release")}
    assert manifest.read(root).release == 2
    assert json.loads(open(os.path.join(root, A.WORK_DIR, A.JOURNAL)).read())["release_after"] == 2
    assert ledger.request(1).state == "received"  # not recorded yet: a crash here is finished by recover()
    A.record(ledger, root, journal, lambda _s: None)
    assert ledger.request(1).state == "applied" and not os.path.exists(os.path.join(root, A.WORK_DIR))


def test_the_steps_in_a_row_are_apply_pending(setup, tmp_path):
    root, ledger, _, victims = setup
    current = manifest.read(root)
    journal = A.stage(root, current, A.plan(ledger, root, current), now=NOW)
    A.commit(ledger, root, journal, lambda _s: None)
    A.record(ledger, root, journal, lambda _s: None)

    ref = str(tmp_path / "ref")
    make_release(ref, n=12, num_shards=3)
    ref_ledger = Ledger(str(tmp_path / "ref.sqlite"))
    _add(ref_ledger, "<r1@x>", victims + [image_id("not-in-release")])
    A.apply_pending(ref_ledger, ref, now=NOW, workers=1)
    assert tree(root) == tree(ref)


def test_journal_round_trips(setup):
    root, ledger, _, _ = setup
    current = manifest.read(root)
    journal = A.stage(root, current, A.plan(ledger, root, current), now=NOW)
    assert A.Journal.from_dict(json.loads(json.dumps(journal.to_dict()))) == journal
