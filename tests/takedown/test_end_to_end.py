"""End to end through the CLI: veilset build -> mail requests -> ingest -> apply -> notify -> status -> rebuild
with --ledger. Real Beam build (no models, small synthetic images), real aiosmtpd."""
from __future__ import annotations

import email
import email.policy
import json
import mailbox
import os

import numpy as np
import pytest
from PIL import Image

from veilset.cli import main
from veilset.release import ids, layout
from veilset.release.manifest import load_manifest
from veilset.release.index import read as read_index
from veilset.takedown.ledger import Ledger
from tests.servers import smtp_server  # noqa: F401 - pytest fixture
from tests.takedown import mails
from tests.takedown.releases import all_bytes, assert_gone, expected_files, tree

pytestmark = pytest.mark.slow

BUILD = ["--workers", "1", "--shards", "3", "--formats", "parquet,coco,sa1b", "--masks", "none",
         "--face-detector", "none", "--plate-detector", "none"]


def _photos(folder) -> list[str]:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for k in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(folder / f"p{k:02d}.png")
    return sorted(str(p) for p in folder.iterdir())


def _index(root: str) -> dict[str, dict]:
    m = load_manifest(root)
    return {r["image_id"]: r for e in m["index"] for r in read_index(root, e["path"])}


def test_mail_to_removal_to_receipt_to_rebuild(tmp_path, smtp_server, capsys):  # noqa: F811
    photos = tmp_path / "photos"
    _photos(photos)
    release = str(tmp_path / "release")
    assert main(["build", str(photos), "--output", release, *BUILD]) == 0
    index = _index(release)
    assert len(index) == 12
    by_shard: dict[int, list[str]] = {}
    for i, row in sorted(index.items()):
        by_shard.setdefault(row["shard"], []).append(i)
    shard_x = max(by_shard, key=lambda s: len(by_shard[s]))
    victims = by_shard[shard_x][:2]
    jpegs = {i: all_bytes(release)[index[i]["file_name"]] for i in victims}
    before = tree(release)
    unknown = mails.image_id("never-published")

    md = mailbox.Maildir(str(tmp_path / "mail"), create=True)
    md.add(mails.plain([victims[0], unknown], message_id="<e2e-1@example.org>"))
    md.add(mails.forwarded(mails.html_only([victims[1]], message_id="<e2e-inner@example.net>"), depth=2,
                           sender="bob@example.net"))
    md.add(mails.many_ids(5000, sender="mallory@example.com", message_id="<flood@example.com>"))
    ledger_path = str(tmp_path / "ledger.sqlite")
    assert main(["takedown", "ingest", "--ledger", ledger_path, "--maildir", str(tmp_path / "mail"),
                 "--release", release]) == 0
    assert main(["takedown", "ingest", "--ledger", ledger_path, "--maildir", str(tmp_path / "mail")]) == 0  # rerun
    ledger = Ledger(ledger_path)
    states = sorted(r.state for r in ledger.requests())
    assert states == ["quarantined", "received", "received"]  # the 5,000-ID flood is over the per-message limit
    unknown_rows = [r for q in ledger.requests("received") for r in ledger.request_ids(q.id) if r.status == "unknown"]
    assert [r.image_id for r in unknown_rows] == [unknown]

    capsys.readouterr()
    assert main(["takedown", "apply", "--ledger", ledger_path, "--release", release]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["removed"]) == sorted(victims) and report["release_after"] == 2
    after = tree(release)
    for path, digest in before.items():
        if path.startswith(("parquet/", "coco/", "sa1b/", "index/")) and f"shard-{shard_x:05d}-" not in path:
            assert after[path] == digest, path
    assert set(after) == expected_files(release)
    assert_gone(release, victims, list(jpegs.values()))
    m = load_manifest(release)
    assert m["release"] == 2 and m["counts"]["removed"] == 2 and m["counts"]["published"] == 10

    assert main(["takedown", "notify", "--ledger", ledger_path, "--smtp", f"127.0.0.1:{smtp_server.port}"]) == 0
    got = smtp_server.received()
    assert sorted(g["rcpt_tos"][0] for g in got) == ["alice@example.org", "bob@example.net"]
    for g in got:
        body = email.message_from_bytes(g["data"], policy=email.policy.default).get_body(("plain",)).get_content()
        assert "release 2" in body
    alice = next(g for g in got if g["rcpt_tos"] == ["alice@example.org"])
    assert unknown in alice["data"].decode() and victims[0] in alice["data"].decode()

    capsys.readouterr()
    assert main(["takedown", "status", "--ledger", ledger_path, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["requests"]["notified"] == 2 and status["requests"]["quarantined"] == 1
    assert status["blocked_images"] == 3  # the 2 removed + the ID that was not in the release (yet)
    assert main(["takedown", "status", "--ledger", ledger_path]) == 0
    assert "notified 2" in capsys.readouterr().out

    # a rebuild of the same photos with the ledger never brings the images back
    rebuilt = str(tmp_path / "rebuilt")
    assert main(["build", str(photos), "--output", rebuilt, *BUILD, "--ledger", ledger_path]) == 0
    m2 = load_manifest(rebuilt)
    assert not set(_index(rebuilt)) & set(victims)
    assert m2["counts"]["blocked"] == 2 and m2["counts"]["published"] == 10
    assert_gone(rebuilt, victims, list(jpegs.values()))
    # and the rebuilt shards equal the taken-down release's shards byte for byte (deterministic writers), but for
    # the generation in the per-image file names (the takedown wrote its shards as release 2's)
    taken_down = {(e["format"], e["shard"]): e["path"] for e in m["shards"] + m["index"]}
    assert set(taken_down) == {(e["format"], e["shard"]) for e in m2["shards"] + m2["index"]}
    files = all_bytes(release)
    for e in m2["shards"] + m2["index"]:
        theirs = taken_down[(e["format"], e["shard"])]
        same = files[theirs].replace(layout.generation_tag(layout.generation_of(theirs)).encode() + b"/",
                                     layout.generation_tag(1).encode() + b"/")
        assert ids.sha256_hex(same) == e["sha256"], e["path"]


def test_cli_validation_errors(tmp_path, capsys):
    assert main(["takedown", "apply", "--ledger", str(tmp_path / "missing.sqlite"), "--release", str(tmp_path)]) == 2
    assert main(["takedown", "ingest", "--ledger", str(tmp_path / "l.sqlite"), "--maildir", str(tmp_path),
                 "--watch", "0"]) == 2
    assert main(["takedown", "ingest", "--ledger", str(tmp_path / "l.sqlite"), "--eml", str(tmp_path),
                 "--max-ids", "0"]) == 2
    assert main(["takedown", "ingest", "--ledger", str(tmp_path / "l.sqlite"), "--imap", "imap://u:pw@h/INBOX"]) == 2
    assert "password" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["takedown", "notify", "--ledger", "x", "--smtp", "h:1", "--outbox", "d"])  # mutually exclusive
    from tests.servers import free_port

    os.environ["VEILSET_TEST_PW"] = "x"
    try:  # a mail server that is down is a clean exit 1, not a traceback
        assert main(["takedown", "ingest", "--ledger", str(tmp_path / "l.sqlite"), "--imap-password-env",
                     "VEILSET_TEST_PW", "--imap", f"imap://u@127.0.0.1:{free_port()}/INBOX"]) == 1
    finally:
        del os.environ["VEILSET_TEST_PW"]
    assert "cannot read mail" in capsys.readouterr().err
    assert ids.is_valid_image_id(mails.image_id(0))


def test_watch_loop_picks_up_new_mail_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "1.eml").write_bytes(mails.plain([mails.image_id(1)], message_id="<w1@x.org>"))
    ledger_path = str(tmp_path / "l.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "veilset", "takedown", "ingest", "--ledger", ledger_path,
                             "--eml", str(inbox), "--watch", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=os.getcwd())
    try:
        deadline = time.monotonic() + 60
        def count() -> int:
            try:
                return len(Ledger(ledger_path).requests())
            except Exception:
                return 0
        while count() < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        (inbox / "2.eml").write_bytes(mails.plain([mails.image_id(2)], message_id="<w2@x.org>"))
        while count() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count() == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def test_status_approve_moves_review_to_received(tmp_path, capsys):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "1.eml").write_bytes(mails.many_ids(30, message_id="<many@x.org>"))
    ledger_path = str(tmp_path / "l.sqlite")
    assert main(["takedown", "ingest", "--ledger", ledger_path, "--eml", str(inbox),
                 "--unverified-ids-per-day", "20"]) == 0
    (req,) = Ledger(ledger_path).requests()
    assert req.state == "review" and req.reason.startswith("unverified_cap: 30 IDs")
    assert main(["takedown", "status", "--ledger", ledger_path, "--approve", str(req.id)]) == 0
    assert Ledger(ledger_path).request(req.id).state == "received"
    history = Ledger(ledger_path).history()
    assert [h["event"] for h in history] == ["ingested", "approved"] and "@" in history[1]["detail"]["by"]
