"""kill -9 at 20+ points of a takedown apply (real process exits, no cleanup): the folder always holds the
previous release whole or the new one (audited each time: integrity and takedowns, with the ledger; the factory
images are not metadata-clean), the removed images are blocked once the new release is in, and a rerun completes
to exactly the release an uninterrupted apply gives."""
from __future__ import annotations

import os

import pytest

from veilset.api import ledger_snapshot
from veilset.release import layout
from veilset.takedown.apply import apply_pending
from veilset.takedown.ledger import Ledger, NewRequest
from tests import crash
from tests.takedown.releases import assert_gone, make_release

NOW = "2026-11-25T13:00:00Z"


def _request(ledger_path: str, victims: list[str]) -> None:
    Ledger(ledger_path).add_request(NewRequest(message_id="<r1@x>", sender="a@example.org", date_header="",
                                               source="t", state="received", image_ids=tuple(victims)))


def _argv(root: str, ledger_path: str) -> list[str]:
    code = ("from veilset.takedown.apply import apply_pending\n"
            "from veilset.takedown.ledger import Ledger\n"
            f"apply_pending(Ledger({ledger_path!r}), {root!r}, now={NOW!r}, workers=1)\n")
    return [crash.PYTHON, "-c", code]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash-apply")
    base = str(tmp / "base")
    _, images = make_release(base, n=24, num_shards=4)
    victims = [images[k].image_id for k in (1, 6, 11, 17)]
    victim_jpegs = [images[k].jpeg for k in (1, 6, 11, 17)]
    reference = crash.fresh_copy(base, str(tmp / "reference"))
    _request(str(tmp / "reference.sqlite"), victims)
    apply_pending(Ledger(str(tmp / "reference.sqlite")), reference, now=NOW)
    work, ledger_path = str(tmp / "work"), str(tmp / "work.sqlite")
    crash.fresh_copy(base, work)
    _request(ledger_path, victims)
    points = crash.change_points(_argv(work, ledger_path), str(tmp / "points.log"))
    return {"tmp": tmp, "base": base, "reference": reference, "victims": victims, "jpegs": victim_jpegs,
            "points": points}


def test_kill_at_twenty_points_of_an_apply_then_rerun(scene):
    points = crash.spread(len(scene["points"]), 24)
    assert len(points) >= 20, scene["points"]
    old_state, new_state = crash.manifest_state(scene["base"]), crash.manifest_state(scene["reference"])
    reference = crash.tree(scene["reference"])
    seen = set()
    for point in points:
        work = crash.fresh_copy(scene["base"], str(scene["tmp"] / "work"))
        ledger_path = str(scene["tmp"] / f"kill-{point}.sqlite")
        _request(ledger_path, scene["victims"])
        crash.kill_at(_argv(work, ledger_path), point)
        where = f"killed at {point} ({scene['points'][point - 1]})"
        state = crash.manifest_state(work)
        assert state in (old_state, new_state), f"{where}: mixed manifest"
        seen.add("old" if state == old_state else "new")
        ledger = Ledger(ledger_path)
        if state == new_state:  # committed: the ledger blocks them already, and the release honours it
            assert ledger.blocked_image_ids() == set(scene["victims"]), where
            crash.check_interrupted(work, ledger_snapshot(ledger_path), metadata=False)
        else:  # the previous release, whole (its images are still published until the rerun commits)
            crash.check_interrupted(work, metadata=False)
        report = apply_pending(ledger, work, now=NOW)
        assert report.release_after == 2, where
        assert crash.tree(work) == reference, f"{where}: rerun differs"
        assert ledger.request(1).state == "applied" and ledger.blocked_image_ids() == set(scene["victims"])
        assert crash.check_interrupted(work, ledger_snapshot(ledger_path), metadata=False) == []
        assert_gone(work, scene["victims"], scene["jpegs"])
    assert seen == {"old", "new"}


def test_a_build_refuses_a_folder_with_an_unfinished_apply(scene):
    work = crash.fresh_copy(scene["base"], str(scene["tmp"] / "pending"))
    ledger_path = str(scene["tmp"] / "pending.sqlite")
    _request(ledger_path, scene["victims"])
    journal_at = next(k for k, p in enumerate(scene["points"], 1) if p.startswith("move"))
    crash.kill_at(_argv(work, ledger_path), journal_at)
    assert os.path.exists(os.path.join(work, layout.TAKEDOWN_JOURNAL))
    from veilset.cli import main

    photos = scene["tmp"] / "photos"
    photos.mkdir()
    assert main(["build", str(photos), "--output", work, "--face-detector", "none", "--plate-detector", "none",
                 "--masks", "none"]) == 2
