"""Apply removes the near-duplicates of each requested image that the release holds (PDQ within MATCH_DISTANCE),
logs each with its distance, puts the grey band (up to REVIEW_DISTANCE) to review, and leaves distinct photos
alone. Real photos that ship in packages, and copies of one (re-encoded, resized, cropped)."""
from __future__ import annotations

import dataclasses
import io
from email.message import EmailMessage

import numpy as np
import pytest
from PIL import Image

from veilset.api import build_blocklist, ledger_snapshot
from veilset.audit.findings import FAIL, PASS
from veilset.audit.integrity import check_integrity
from veilset.audit.release import Release
from veilset.audit.takedowns import check_takedowns
from veilset.cli import main
from veilset.detectors.package_photos import photo_path
from veilset.release.manifest import load_manifest
from veilset.takedown.apply import apply_pending
from veilset.takedown.intake import IntakePolicy, parse_message
from veilset.takedown.ledger import Ledger, NewRequest
from veilset.takedown.notify import build_receipt
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
    near = [copies[k] for k in ("reencoded", "half", "crop1", "crop2")]  # crop2: through a crop window's hash
    assert set(report.removed) == {original.image_id, *(c.image_id for c in near)}
    assert release_ids(root) == {copies["crop12"].image_id, *(o.image_id for o in others)}
    assert_gone(root, list(report.removed), [original.jpeg, *(c.jpeg for c in near)])

    entry = load_manifest(root)["log"][-1]
    logged = {n["image_id"]: n for n in entry["near_duplicates"]}
    assert set(logged) == {c.image_id for c in near} and all(n["of"] == original.image_id for n in logged.values())
    assert all(0 <= n["distance"] <= 31 for n in logged.values()) and logged[copies["half"].image_id]["distance"] > 0
    assert sorted(entry["removed"]) == sorted(report.removed) and len(entry["removed_pdq"]) == 5
    assert {i for i, _ in ledger.blocked_fingerprints()} == set(report.removed)
    audit = check_takedowns(Release(root), ledger_snapshot(ledger.path))  # the log names them, nothing else
    assert audit.status == PASS, [f.line() for f in audit.findings]

    review = [r for r in ledger.requests("review")]
    assert [r.message_id for r in review] == ["<hopper@x>#near-duplicates"]
    assert [i.image_id for i in ledger.request_ids(review[0].id)] == [copies["crop12"].image_id]
    assert "bits from removed" in review[0].reason
    # a person approves it: the next apply removes the grey-band copy too
    ledger.approve(review[0].id, by="ops")
    apply_pending(ledger, root, now="2026-12-02T09:00:00Z", workers=1)
    assert release_ids(root) == {o.image_id for o in others}
    assert ledger.requests("review") == []


def test_apply_removes_a_mirrored_or_turned_copy_already_in_the_release(tmp_path):
    hopper = _rgb("grace_hopper.jpg")
    original = published_photo(hopper, "hopper", quality=90)
    mirrored = published_photo(np.ascontiguousarray(hopper[:, ::-1]), "mirrored", quality=90)
    turned = published_photo(np.ascontiguousarray(np.rot90(hopper)), "turned", quality=90)
    others = [published_photo(_rgb(n), n) for n in ("chelsea.png", "coffee.png", "rocket.jpg")]
    root = str(tmp_path / "release")
    release_of(root, [original, mirrored, turned, *others], num_shards=3)
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.add_request(NewRequest(message_id="<hopper@x>", sender="grace@example.org", date_header="",
                                  source="t", state="received", image_ids=(original.image_id,)))
    report = apply_pending(ledger, root, now="2026-12-02T08:00:00Z", workers=1)
    assert set(report.removed) == {original.image_id, mirrored.image_id, turned.image_id}
    assert release_ids(root) == {o.image_id for o in others}
    logged = {n["image_id"]: n["distance"] for n in load_manifest(root)["log"][-1]["near_duplicates"]}
    assert set(logged) == {mirrored.image_id, turned.image_id} and max(logged.values()) <= 31


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


def _mail(body: str, photo: bytes | None = None, message_id: str = "<photo@example.org>") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "grace@example.org", "takedown@veilset.invalid", "remove my photo"
    msg["Message-ID"] = message_id
    msg.set_content(body)
    if photo is not None:
        msg.add_attachment(photo, maintype="image", subtype="png", filename="me.png")
    return msg.as_bytes()


def test_a_request_by_photo_removes_its_matches_and_a_photo_without_one_is_kept(photos, tmp_path):
    """A mail with a photo and no ID (or a PDQ hash in its text) asks for the images matching it: the same trust
    rules, apply removes the matches (and puts the grey band to review); with no match the receipt says so and
    the photo's hash still blocks later builds."""
    root, original, copies, others = photos
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(_rgb("grace_hopper.jpg")[:, ::-1])).save(buf, "PNG")  # mirrored copy
    stranger = published_photo(_rgb("motorcycle.png"), "motorcycle")  # never in the release
    policy = IntakePolicy()
    by_photo = parse_message(_mail("Please remove the attached photo of me.", buf.getvalue()), source="t",
                             policy=policy)
    by_hash = parse_message(_mail(f"My photo's PDQ hash:\n{stranger.pdq}\n", message_id="<hash@example.org>"),
                            source="t", policy=policy)
    assert (by_photo.state, by_photo.image_ids, len(by_photo.photo_pdq) >= 8) == ("received", (), True)
    assert (by_hash.state, by_hash.photo_pdq) == ("received", (stranger.pdq,))
    nothing = parse_message(_mail("remove everything about me"), source="t", policy=policy)
    assert nothing.state == "quarantined" and nothing.reason.startswith("no_ids")

    ledger = Ledger(str(tmp_path / "l.sqlite"))
    photo_rid, _ = ledger.add_request(by_photo, trust=policy.trust)
    hash_rid, _ = ledger.add_request(by_hash, trust=policy.trust)
    assert ledger.request(photo_rid).state == "received" and ledger.photo_hashes(hash_rid) == (stranger.pdq,)
    assert ledger.blocked_photo_hashes() == ()  # nothing blocks before the request is applied
    report = apply_pending(ledger, root, now="2026-12-02T08:30:00Z", workers=1)
    near = {original.image_id, *(copies[k].image_id for k in ("reencoded", "half", "crop1"))}
    assert set(report.removed) == near | {copies["crop2"].image_id}  # a crop of a matched image: its windows
    assert release_ids(root) == {copies["crop12"].image_id, *(o.image_id for o in others)}
    assert [r.message_id for r in ledger.requests("review")] == ["<photo@example.org>#near-duplicates"]
    assert {r.image_id: r.status for r in ledger.request_ids(photo_rid)} == {i: "removed" for i in
                                                                             near | {copies["crop2"].image_id}}
    assert {i for i, _ in ledger.blocked_windows()} == near  # the crop windows of each image the photo matched
    assert ledger.request(hash_rid).state == "applied" and ledger.request_ids(hash_rid) == []

    matched = build_receipt(ledger, ledger.request(photo_rid)).get_content()
    assert original.image_id in matched and "matched the photo you sent" in matched
    unmatched = build_receipt(ledger, ledger.request(hash_rid)).get_content()
    assert "No published image matched the photo you sent" in unmatched
    blocklist = build_blocklist(ledger.path)  # what a later build gets: the photo's hash blocks its copies
    assert (f"photo of request {hash_rid}", stranger.pdq) in blocklist.pdq


def test_the_removed_images_crop_windows_are_a_listed_release_file_the_audit_verifies(photos, tmp_path):
    root, original, copies, others = photos
    ledger = Ledger(str(tmp_path / "l.sqlite"))
    ledger.add_request(NewRequest(message_id="<w@x>", sender="grace@example.org", date_header="", source="t",
                                  state="received", image_ids=(original.image_id,)))
    apply_pending(ledger, root, now="2026-12-02T08:00:00Z", workers=1)
    windows = load_manifest(root)["removed_windows"]
    path = f"{root}/{windows['path']}"
    assert check_integrity(Release(root)).status == PASS
    with open(path, "r+b") as fh:  # one bit of one hash: a crop would slip through
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    result = check_integrity(Release(root))
    assert result.status == FAIL and any(f.file == windows["path"] and "removed_windows" in f.message
                                         for f in result.findings)
