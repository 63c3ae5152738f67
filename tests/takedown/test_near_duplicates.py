"""Apply removes the near-duplicates of each requested image that the release holds (PDQ within MATCH_DISTANCE),
logs each with its distance, puts the grey band (up to REVIEW_DISTANCE) to review, and leaves distinct photos
alone. Real photos that ship in packages, and copies of one (re-encoded, resized, cropped)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from veilset.api import ledger_snapshot
from veilset.audit.findings import PASS
from veilset.audit.release import Release
from veilset.audit.takedowns import check_takedowns
from veilset.cli import main
from veilset.detectors.package_photos import photo_path
from veilset.release.manifest import load_manifest
from veilset.takedown.apply import apply_pending
from veilset.takedown.ledger import Ledger, NewRequest
from tests.factories import photo_copies, published_photo
from tests.takedown.releases import assert_gone, release_ids, release_of


def _rgb(name: str) -> np.ndarray:
    with Image.open(photo_path(name)) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture
def photos(tmp_path):
    hopper = _rgb("grace_hopper.jpg")
    original = published_photo(hopper, "hopper", quality=90)
    copies = {k: published_photo(v, k, quality=40 if k == "reencoded" else 90) for k, v in photo_copies(hopper).items()}
    others = [published_photo(_rgb(n), n) for n in ("chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png")]
    root = str(tmp_path / "release")
    release_of(root, [original, *copies.values(), *others], num_shards=3)
    return root, original, copies, others


def test_apply_removes_near_duplicates_and_puts_the_grey_band_to_review(photos, tmp_path):
    root, original, copies, others = photos
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    rid, _ = ledger.add_request(NewRequest(message_id="<hopper@x>", sender="grace@example.org", date_header="",
                                           source="t", state="received", image_ids=(original.image_id,)))
    report = apply_pending(ledger, root, now="2026-12-02T08:00:00Z", workers=1)
    near = [copies[k] for k in ("reencoded", "half", "crop1")]
    assert set(report.removed) == {original.image_id, *(c.image_id for c in near)}
    assert release_ids(root) == {copies["crop2"].image_id, *(o.image_id for o in others)}
    assert_gone(root, list(report.removed), [original.jpeg, *(c.jpeg for c in near)])

    entry = load_manifest(root)["log"][-1]
    logged = {n["image_id"]: n for n in entry["near_duplicates"]}
    assert set(logged) == {c.image_id for c in near} and all(n["of"] == original.image_id for n in logged.values())
    assert all(0 <= n["distance"] <= 31 for n in logged.values()) and logged[copies["half"].image_id]["distance"] > 0
    assert sorted(entry["removed"]) == sorted(report.removed) and len(entry["removed_pdq"]) == 4
    assert {i for i, _ in ledger.blocked_fingerprints()} == set(report.removed)
    audit = check_takedowns(Release(root), ledger_snapshot(ledger.path))  # the log names them, nothing else
    assert audit.status == PASS, [f.line() for f in audit.findings]

    review = [r for r in ledger.requests("review")]
    assert [r.message_id for r in review] == ["<hopper@x>#near-duplicates"]
    assert [i.image_id for i in ledger.request_ids(review[0].id)] == [copies["crop2"].image_id]
    assert "bits from removed" in review[0].reason
    # a person approves it: the next apply removes the grey-band copy too
    ledger.approve(review[0].id, by="ops")
    apply_pending(ledger, root, now="2026-12-02T09:00:00Z", workers=1)
    assert release_ids(root) == {o.image_id for o in others}
    assert ledger.requests("review") == []


@pytest.mark.parametrize("with_fingerprints", [True, False])
def test_takedown_find_prints_the_published_copies_of_a_photo(photos, tmp_path, capsys, with_fingerprints):
    """From the index's PDQ, or (a release built without them) from its published JPEGs."""
    root, original, copies, others = photos
    if not with_fingerprints:
        root = str(tmp_path / "old")
        release_of(root, [dataclasses.replace(im, pdq="", pixels_sha256="")
                          for im in (original, *copies.values(), *others)], num_shards=3)
    hopper = _rgb("grace_hopper.jpg")
    mirrored, stranger = tmp_path / "mirrored.png", tmp_path / "stranger.jpg"
    Image.fromarray(np.ascontiguousarray(hopper[:, ::-1])).save(mirrored)
    Image.fromarray(_rgb("motorcycle.png")).save(stranger, quality=90)
    assert main(["takedown", "find", "--release", root, str(mirrored), str(stranger), original.pdq]) == 0
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    by_photo: dict[str, dict[str, tuple[int, str]]] = {}
    for photo, image_id, *rest in lines:
        by_photo.setdefault(photo, {})[image_id] = (int(rest[0]), rest[1]) if rest[0] != "no match" else rest[0]
    near = {original.image_id, *(copies[k].image_id for k in ("reencoded", "half", "crop1"))}
    for photo in (str(mirrored), original.pdq):
        assert {i for i, (d, band) in by_photo[photo].items() if band == "match"} == near
        assert by_photo[photo][copies["crop2"].image_id][1] == "review"
    assert by_photo[original.pdq][original.image_id][0] == 0  # the same pixels, whichever way hashed
    assert by_photo[str(stranger)] == {"-": "no match"}
