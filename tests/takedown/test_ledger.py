"""Ledger: schema/WAL, idempotency, states, abuse guard, append-only history, blocklist read API, hostile strings."""
from __future__ import annotations

import sqlite3

import pytest

from veilset.takedown.ledger import SCHEMA_VERSION, ApplyOutcome, Ledger, NewRequest, RemovedImage
from tests.takedown.mails import image_id

A, B, C = image_id("a"), image_id("b"), image_id("c")


def req(message_id: str, ids=(A,), sender: str = "alice@example.org", state: str = "received", **kw) -> NewRequest:
    return NewRequest(message_id=message_id, sender=sender, date_header="", source="test", state=state,
                      image_ids=tuple(ids), **kw)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(str(tmp_path / "ledger.sqlite"))
    yield led
    led.close()


def test_wal_schema_version_and_reopen(tmp_path):
    path = str(tmp_path / "l.sqlite")
    Ledger(path).add_request(req("<1@x>"))
    led = Ledger(path)
    assert led.schema_version() == SCHEMA_VERSION
    assert led._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert len(led.requests()) == 1


def test_newer_schema_is_refused(tmp_path):
    path = str(tmp_path / "l.sqlite")
    Ledger(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="schema version 99"):
        Ledger(path)


def test_same_message_id_is_one_request(ledger):
    rid, created = ledger.add_request(req("<1@x>", ids=(A,)))
    rid2, created2 = ledger.add_request(req("<1@x>", ids=(A, B)))
    assert created and not created2 and rid == rid2
    assert [r.image_id for r in ledger.request_ids(rid)] == [A]


def test_sql_looking_strings_are_stored_verbatim(ledger):
    evil = "<x'); DROP TABLE requests; --@evil>"
    rid, _ = ledger.add_request(req(evil, sender="robert');drop table blocklist;--@example.com"))
    row = ledger.request(rid)
    assert row.message_id == evil and row.sender.startswith("robert')")
    assert ledger.has_message(evil)
    assert {t for (t,) in ledger._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")} >= {
        "requests", "blocklist", "history", "request_ids", "meta"}


def test_abuse_guard_sends_excess_to_review_and_approve_releases_it(ledger):
    ids = [image_id(k) for k in range(8)]
    r1, _ = ledger.add_request(req("<1@x>", ids=ids[:5]), abuse_limit_per_day=6)
    r2, _ = ledger.add_request(req("<2@x>", ids=ids[5:]), abuse_limit_per_day=6)
    r3, _ = ledger.add_request(req("<3@x>", ids=ids[5:], sender="other@example.org"), abuse_limit_per_day=6)
    assert [ledger.request(r).state for r in (r1, r2, r3)] == ["received", "review", "received"]
    assert "abuse_guard" in ledger.request(r2).reason
    ledger.approve(r2, note="checked by operator")
    assert ledger.request(r2).state == "received"
    with pytest.raises(ValueError, match="only review/quarantined"):
        ledger.approve(r1)


def test_abuse_window_is_24_hours(ledger):
    ledger.add_request(req("<old@x>", ids=[image_id(k) for k in range(5)]), received_at="2026-01-01T00:00:00.000000Z",
                       abuse_limit_per_day=6)
    rid, _ = ledger.add_request(req("<new@x>", ids=[image_id(k) for k in range(5, 10)]),
                                received_at="2026-01-02T00:00:01.000000Z", abuse_limit_per_day=6)
    assert ledger.request(rid).state == "received"


def test_states_blocklist_and_history(ledger):
    rid, _ = ledger.add_request(req("<1@x>", ids=(A, B, C)))
    q, _ = ledger.add_request(req("<2@x>", ids=(), state="quarantined", reason="too_many_ids: ..."))
    out = ApplyOutcome(rid, (RemovedImage(A, "c" * 64, "d" * 64),), already_removed=(), not_found=(B, C))
    ledger.block_images(2, [out])
    assert ledger.blocked_image_ids() == {A}
    ledger.record_applied(2, [out])
    ledger.record_applied(2, [out])  # idempotent
    row = ledger.request(rid)
    assert (row.state, row.applied_release) == ("applied", 2)
    assert {r.image_id: (r.status, r.release) for r in ledger.request_ids(rid)} == {
        A: ("removed", 2), B: ("not_found", 2), C: ("not_found", 2)}
    assert ledger.blocked_content_hashes() == {"c" * 64, "d" * 64}
    ledger.mark_notified(rid, channel="outbox:x")
    assert ledger.request(rid).state == "notified"
    events = [(h["request_id"], h["event"], h["from_state"], h["to_state"]) for h in ledger.history()]
    assert events == [(rid, "ingested", None, "received"), (q, "ingested", None, "quarantined"),
                      (rid, "applied", "received", "applied"), (rid, "notified", "applied", "notified")]
    times = [h["time"] for h in ledger.history()]
    assert times == sorted(times)
    assert ledger.counts() == {"received": 0, "applied": 0, "notified": 1, "quarantined": 1, "review": 0}


def test_history_is_append_only(ledger):
    ledger.add_request(req("<1@x>"))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger._conn.execute("UPDATE history SET event='x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        ledger._conn.execute("DELETE FROM history")
    assert len(ledger.history()) == 1


def test_two_connections_share_the_file(tmp_path):
    path = str(tmp_path / "l.sqlite")
    one, two = Ledger(path), Ledger(path)
    one.add_request(req("<1@x>"))
    assert two.has_message("<1@x>")
    _, created = two.add_request(req("<1@x>"))
    assert not created


def test_bad_paths_are_refused():
    with pytest.raises(ValueError, match="local SQLite"):
        Ledger("gs://bucket/ledger.sqlite")
