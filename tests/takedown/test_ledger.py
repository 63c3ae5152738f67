"""Ledger: schema/WAL and its v1 -> v2 migration, idempotency, states, trust limits, review decisions, append-only
history, blocklist read API, hostile strings."""
from __future__ import annotations

import sqlite3

import pytest

from veilset.takedown.ledger import SCHEMA_VERSION, ApplyOutcome, Ledger, NewRequest, RemovedImage
from veilset.takedown.policy import TrustPolicy
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


def verified(message_id: str, ids, domain: str = "example.org", **kw) -> NewRequest:
    return req(message_id, ids=ids, authenticity="verified", auth_domain=domain, **kw)


def unverified(message_id: str, ids, **kw) -> NewRequest:
    return req(message_id, ids=ids, authenticity="unverified", **kw)


def test_limits_are_per_signing_domain_and_one_global_cap_for_unverified(ledger):
    trust = TrustPolicy(ids_per_domain_per_day=6, unverified_ids_per_day=3)
    ids = [image_id(k) for k in range(20)]
    r1, _ = ledger.add_request(verified("<1@x>", ids[:5]), trust=trust)
    r2, _ = ledger.add_request(verified("<2@x>", ids[5:7]), trust=trust)  # 7 > 6 for example.org
    r3, _ = ledger.add_request(verified("<3@x>", ids[5:7], domain="other.org"), trust=trust)
    # unverified: one budget for every sender, whatever From says
    u1, _ = ledger.add_request(unverified("<4@x>", ids[10:12], sender="a@forged.example"), trust=trust)
    u2, _ = ledger.add_request(unverified("<5@x>", ids[12:14], sender="b@other.example"), trust=trust)
    u3, _ = ledger.add_request(unverified("<6@x>", ids[14:15], sender="c@third.example"), trust=trust)
    f1, _ = ledger.add_request(req("<7@x>", ids=ids[15:16], authenticity="failed"), trust=trust)
    states = [ledger.request(r).state for r in (r1, r2, r3, u1, u2, u3, f1)]
    assert states == ["received", "review", "received", "received", "review", "received", "review"]
    assert ledger.request(r2).reason.startswith("domain_limit: 7 IDs from example.org")
    assert ledger.request(u2).reason.startswith("unverified_cap: 4 IDs")
    assert ledger.request(f1).reason.startswith("not_authenticated")
    assert [ledger.request(r).decided_by for r in (r1, r2, u1, f1)] == ["policy", "", "policy", ""]
    assert ledger.automatic_usage("2000-01-01T00:00:00.000000Z") == 3
    assert ledger.automatic_usage("2000-01-01T00:00:00.000000Z", org_domain="example.org") == 5


def test_review_decisions_are_recorded_and_do_not_use_the_budget(ledger):
    trust = TrustPolicy(unverified_ids_per_day=1)
    ids = [image_id(k) for k in range(4)]
    r1, _ = ledger.add_request(unverified("<1@x>", ids[:1]), trust=trust)
    r2, _ = ledger.add_request(unverified("<2@x>", ids[1:2]), trust=trust)
    r3, _ = ledger.add_request(unverified("<3@x>", ids[2:3]), trust=trust)
    assert [ledger.request(r).state for r in (r1, r2, r3)] == ["received", "review", "review"]
    ledger.approve(r2, note="photo of the sender, checked", by="ops@host")
    ledger.reject(r3, reason="not the sender's photo", by="ops@host")
    assert (ledger.request(r2).state, ledger.request(r2).decided_by) == ("received", "ops@host")
    assert ledger.request(r2).reason == "approved by ops@host: photo of the sender, checked"
    assert ledger.request(r3).state == "rejected" and "not the sender's photo" in ledger.request(r3).reason
    assert ledger.automatic_usage("2000-01-01T00:00:00.000000Z") == 1  # the approval is a person's, not the cap's
    events = [(h["request_id"], h["event"], h["from_state"], h["to_state"]) for h in ledger.history()]
    assert events[-2:] == [(r2, "approved", "review", "received"), (r3, "rejected", "review", "rejected")]
    approved, rejected = ledger.history()[-2]["detail"], ledger.history()[-1]["detail"]
    assert approved["by"] == "ops@host" and approved["note"] == "photo of the sender, checked"
    assert approved["was_pending_because"].startswith("unverified_cap")
    assert rejected == {"by": "ops@host", "reason": "not the sender's photo",
                        "was_pending_because": ledger.history()[2]["detail"]["reason"]}
    with pytest.raises(ValueError, match="only review/quarantined"):
        ledger.approve(r1)
    with pytest.raises(ValueError, match="only review/quarantined"):
        ledger.reject(r3, reason="again")
    with pytest.raises(ValueError, match="needs a reason"):
        ledger.reject(r1, reason=" ")


def test_limit_window_is_24_hours(ledger):
    trust = TrustPolicy(unverified_ids_per_day=6)
    ledger.add_request(unverified("<old@x>", [image_id(k) for k in range(5)]),
                       received_at="2026-01-01T00:00:00.000000Z", trust=trust)
    rid, _ = ledger.add_request(unverified("<new@x>", [image_id(k) for k in range(5, 10)]),
                                received_at="2026-01-02T00:00:01.000000Z", trust=trust)
    assert ledger.request(rid).state == "received"
    late, _ = ledger.add_request(unverified("<late@x>", [image_id(11), image_id(12)]),
                                 received_at="2026-01-02T12:00:00.000000Z", trust=trust)
    assert ledger.request(late).state == "review"


_V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE, sender TEXT NOT NULL DEFAULT '',
    date_header TEXT NOT NULL DEFAULT '', received_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ('received', 'applied', 'notified', 'quarantined', 'review')),
    reason TEXT NOT NULL DEFAULT '', dkim TEXT NOT NULL DEFAULT 'none', dkim_domain TEXT NOT NULL DEFAULT '',
    auth_results TEXT NOT NULL DEFAULT '', size INTEGER NOT NULL DEFAULT 0, raw_sha256 TEXT NOT NULL DEFAULT '',
    raw BLOB, applied_release INTEGER, notified_at TEXT);
CREATE INDEX requests_state ON requests(state);
CREATE INDEX requests_sender ON requests(sender, received_at);
CREATE TABLE request_ids (request_id INTEGER NOT NULL REFERENCES requests(id), image_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'unknown', 'removed', 'not_found')), release INTEGER,
    PRIMARY KEY (request_id, image_id));
CREATE TABLE blocklist (image_id TEXT PRIMARY KEY, content_sha256 TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '', request_id INTEGER REFERENCES requests(id), release INTEGER,
    added_at TEXT NOT NULL);
CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, request_id INTEGER,
    message_id TEXT NOT NULL DEFAULT '', event TEXT NOT NULL, from_state TEXT, to_state TEXT,
    detail TEXT NOT NULL DEFAULT '{}');
CREATE TRIGGER history_no_update BEFORE UPDATE ON history BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER history_no_delete BEFORE DELETE ON history BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO requests(message_id, sender, received_at, state, raw) VALUES
    ('<a@x>', 'a@example.org', '2026-01-01T00:00:00.000000Z', 'applied', x'0102'),
    ('<b@x>', 'b@example.org', '2026-01-01T00:00:01.000000Z', 'review', NULL);
INSERT INTO request_ids VALUES (1, 'sa_00000000000000000000000000000001', 'removed', 2);
INSERT INTO blocklist VALUES ('sa_00000000000000000000000000000001', '', '', 1, 2, '2026-01-01T00:00:02.000000Z');
INSERT INTO history(time, request_id, event, to_state) VALUES ('2026-01-01T00:00:00.000000Z', 1, 'ingested', 'received');
"""


def test_a_v1_ledger_is_migrated_in_place(tmp_path):
    path = str(tmp_path / "v1.sqlite")
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SCHEMA)
    conn.close()
    led = Ledger(path)
    assert led.schema_version() == SCHEMA_VERSION == 4
    assert [(r.id, r.state, r.decided_by) for r in led.requests()] == [(1, "applied", ""), (2, "review", "")]
    assert led.raw_message(1) == b"\x01\x02" and led.blocked_image_ids() == {"sa_00000000000000000000000000000001"}
    assert [(h["event"], h["detail"]) for h in led.history()] == [
        ("ingested", {}), ("schema_migrated", {"from": 1, "to": 2}), ("schema_migrated", {"from": 2, "to": 3}),
        ("schema_migrated", {"from": 3, "to": 4})]
    assert led.blocked_fingerprints() == () and led.blocked_pixel_hashes() == set()  # removed before v3
    assert led.blocked_windows() == ()  # removed before v4
    led.reject(2, reason="old request, checked", by="ops")  # the new state is allowed after the migration
    rid, _ = led.add_request(req("<c@x>"))
    assert rid == 3 and led._conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert led._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    led.close()
    assert Ledger(path).schema_version() == 4  # reopening does nothing more
    assert [h["event"] for h in Ledger(path).history()].count("schema_migrated") == 3


def test_the_blocklist_keeps_the_fingerprints_of_removed_images(ledger):
    rid, _ = ledger.add_request(req("<fp@x>", ids=(A, B)))
    windows = bytes(range(32)) + bytes(range(32, 64))
    out = ApplyOutcome(rid, (RemovedImage(A, "c" * 64, "d" * 64, "ab" * 32, "e" * 64, windows),),
                       already_removed=(), not_found=(B,))
    ledger.record_applied(2, [out])
    assert ledger.blocked_fingerprints() == ((A, "ab" * 32),)
    assert ledger.blocked_pixel_hashes() == {"e" * 64}
    assert ledger.blocked_windows() == ((A, windows),)
    assert RemovedImage.from_list(out.removed[0].to_list()) == out.removed[0]  # the apply journal's form


def test_states_blocklist_and_history(ledger):
    rid, _ = ledger.add_request(req("<1@x>", ids=(A, B, C)))
    q, _ = ledger.add_request(req("<2@x>", ids=(), state="quarantined", reason="too_many_ids: ..."))
    out = ApplyOutcome(rid, (RemovedImage(A, "c" * 64, "d" * 64),), already_removed=(), not_found=(B, C))
    ledger.block_images(2, [out])
    assert ledger.blocked_image_ids() == {A, B, C}  # IDs not (yet) in the release are blocked by ID alone
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
    assert ledger.counts() == {"received": 0, "applied": 0, "notified": 1, "quarantined": 1, "review": 0,
                               "rejected": 0}


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
