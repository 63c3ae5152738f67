"""The takedown ledger: SQLite (WAL, versioned schema), requests, their IDs, the blocklist, an append-only history.

States of a request: ``received`` -> ``applied`` (release N) -> ``notified``; or ``quarantined`` (over a limit,
unparseable, policy) or ``review`` (abuse guard; an operator can ``approve`` it back to ``received``).
Per-ID status: ``pending`` -> ``removed`` (release N) | ``not_found``; ``unknown`` when ingest was given a release
that does not hold the ID (apply still looks again, the release may have changed).

Every statement is parametrised; nothing from a message is ever concatenated into SQL. The read API used by
``veilset build --ledger`` and ``veilset audit`` is ``blocked_image_ids``, ``blocked_content_hashes`` and
``history`` (see docs/ARCHITECTURE.md).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Sequence

from veilset.release import storage

SCHEMA_VERSION = 1

STATES = ("received", "applied", "notified", "quarantined", "review")
ID_STATUSES = ("pending", "unknown", "removed", "not_found")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    sender TEXT NOT NULL DEFAULT '',
    date_header TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    reason TEXT NOT NULL DEFAULT '',
    dkim TEXT NOT NULL DEFAULT 'none',
    dkim_domain TEXT NOT NULL DEFAULT '',
    auth_results TEXT NOT NULL DEFAULT '',
    size INTEGER NOT NULL DEFAULT 0,
    raw_sha256 TEXT NOT NULL DEFAULT '',
    raw BLOB,
    applied_release INTEGER,
    notified_at TEXT
);
CREATE INDEX IF NOT EXISTS requests_state ON requests(state);
CREATE INDEX IF NOT EXISTS requests_sender ON requests(sender, received_at);
CREATE TABLE IF NOT EXISTS request_ids (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    image_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in ID_STATUSES)})),
    release INTEGER,
    PRIMARY KEY (request_id, image_id)
);
CREATE INDEX IF NOT EXISTS request_ids_image ON request_ids(image_id);
CREATE TABLE IF NOT EXISTS blocklist (
    image_id TEXT PRIMARY KEY,
    content_sha256 TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    request_id INTEGER REFERENCES requests(id),
    release INTEGER,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    request_id INTEGER,
    message_id TEXT NOT NULL DEFAULT '',
    event TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    detail TEXT NOT NULL DEFAULT '{{}}'
);
CREATE TRIGGER IF NOT EXISTS history_no_update BEFORE UPDATE ON history
BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS history_no_delete BEFORE DELETE ON history
BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
"""


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _not_a_ledger(path: str, what: str) -> ValueError:
    return ValueError(f"--ledger {path!r} is not a veilset takedown ledger ({what}); give the SQLite file "
                      f"`veilset takedown ingest --ledger` created, or a new path to start one")


def _check_is_ledger_file(path: str) -> None:
    """Refuse, before SQLite touches it, a file that is not a SQLite database (a typo'd path to a report...)."""
    if os.path.isdir(path):
        raise _not_a_ledger(path, "it is a folder")
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise _not_a_ledger(path, "not a SQLite file")


def _check_is_ledger_db(conn: sqlite3.Connection, path: str) -> None:
    """Refuse another program's SQLite database (it holds tables but not the ledger's ``meta``), unchanged."""
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as err:
        raise _not_a_ledger(path, str(err)) from None
    if names and "meta" not in names:
        raise _not_a_ledger(path, f"a SQLite database with other tables: {', '.join(sorted(names)[:5])}")


@dataclass(frozen=True)
class NewRequest:
    """What intake hands to the ledger for one message (parsed or quarantined)."""

    message_id: str
    sender: str
    date_header: str
    source: str
    state: str  # received | quarantined | review
    image_ids: tuple[str, ...] = ()
    unknown_ids: frozenset[str] = frozenset()
    reason: str = ""
    dkim: str = "none"
    dkim_domain: str = ""
    auth_results: str = ""
    size: int = 0
    raw_sha256: str = ""
    raw: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RequestRow:
    id: int
    message_id: str
    sender: str
    date_header: str
    received_at: str
    source: str
    state: str
    reason: str
    dkim: str
    dkim_domain: str
    auth_results: str
    size: int
    raw_sha256: str
    applied_release: int | None
    notified_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RequestedId:
    request_id: int
    image_id: str
    status: str
    release: int | None


@dataclass(frozen=True)
class BlockEntry:
    image_id: str
    content_sha256: str
    sha256: str
    request_id: int | None
    release: int | None


_REQ_COLS = ("id, message_id, sender, date_header, received_at, source, state, reason, dkim, dkim_domain, "
             "auth_results, size, raw_sha256, applied_release, notified_at")


class Ledger:
    """One SQLite file. Safe to open from several processes (WAL + busy timeout); one connection per object."""

    def __init__(self, path: str, *, timeout_s: float = 30.0) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"ledger path must be a non-empty string, got {path!r}")
        if storage.is_remote(path):
            raise ValueError(f"ledger must be a local SQLite file path, got {path!r}")
        self.path = path
        self._lock = threading.RLock()
        _check_is_ledger_file(path)
        self._conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        try:
            _check_is_ledger_db(self._conn, path)
        except ValueError:
            self._conn.close()
            raise
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -- plumbing -----------------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> "_Tx":
        return _Tx(self)

    def _migrate(self) -> None:
        with self._tx() as cur:
            exists = cur.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if exists:
                row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise ValueError(f"{self.path}: ledger schema version {version} is newer than this veilset "
                                     f"understands ({SCHEMA_VERSION}); upgrade veilset")
                if version == SCHEMA_VERSION:
                    return
            for stmt in _split_sql(_SCHEMA):
                cur.execute(stmt)
            cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def schema_version(self) -> int:
        row = self._conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0])

    @staticmethod
    def _history(cur: sqlite3.Cursor, *, request_id: int | None, message_id: str, event: str,
                 from_state: str | None, to_state: str | None, detail: dict[str, Any] | None = None,
                 time: str | None = None) -> None:
        cur.execute(
            "INSERT INTO history(time, request_id, message_id, event, from_state, to_state, detail) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (time or utcnow(), request_id, message_id, event, from_state, to_state,
             json.dumps(detail or {}, sort_keys=True)),
        )

    # -- intake -------------------------------------------------------------------------------------------
    def has_message(self, message_id: str) -> bool:
        row = self._conn.execute("SELECT 1 FROM requests WHERE message_id = ?", (message_id,)).fetchone()
        return row is not None

    def ids_from_sender_since(self, sender: str, since_iso: str) -> int:
        row = self._conn.execute(
            "SELECT COUNT(*) FROM request_ids r JOIN requests q ON q.id = r.request_id "
            "WHERE q.sender = ? AND q.received_at >= ? AND q.state != 'quarantined'",
            (sender, since_iso),
        ).fetchone()
        return int(row[0])

    def add_request(self, req: NewRequest, *, received_at: str | None = None,
                    abuse_limit_per_day: int | None = None) -> tuple[int, bool]:
        """Record one message. Returns ``(request_id, created)``; an already-seen Message-ID is not added again.

        With ``abuse_limit_per_day``, a request that would take its sender over that many IDs in the last
        24 hours goes to ``review`` instead of ``received`` (checked inside the same transaction).
        """
        if req.state not in ("received", "quarantined", "review"):
            raise ValueError(f"new request state must be received, quarantined or review, got {req.state!r}")
        now = received_at or utcnow()
        with self._tx() as cur:
            row = cur.execute("SELECT id FROM requests WHERE message_id = ?", (req.message_id,)).fetchone()
            if row is not None:
                self._history(cur, request_id=int(row[0]), message_id=req.message_id, event="duplicate_message",
                              from_state=None, to_state=None, detail={"source": req.source,
                                                                      "raw_sha256": req.raw_sha256}, time=now)
                return int(row[0]), False
            state, reason = req.state, req.reason
            if state == "received" and abuse_limit_per_day is not None and req.image_ids:
                since = (_parse_time(now) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                prior = cur.execute(
                    "SELECT COUNT(*) FROM request_ids r JOIN requests q ON q.id = r.request_id "
                    "WHERE q.sender = ? AND q.received_at >= ? AND q.state != 'quarantined'",
                    (req.sender, since),
                ).fetchone()[0]
                if prior + len(req.image_ids) > abuse_limit_per_day:
                    state = "review"
                    reason = (f"abuse_guard: {prior + len(req.image_ids)} IDs from this sender in 24 h "
                              f"> limit {abuse_limit_per_day}")
            cur.execute(
                "INSERT INTO requests(message_id, sender, date_header, received_at, source, state, reason, dkim, "
                "dkim_domain, auth_results, size, raw_sha256, raw) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (req.message_id, req.sender, req.date_header, now, req.source, state, reason, req.dkim,
                 req.dkim_domain, req.auth_results, req.size, req.raw_sha256, req.raw),
            )
            rid = int(cur.lastrowid)
            cur.executemany(
                "INSERT OR IGNORE INTO request_ids(request_id, image_id, status) VALUES (?, ?, ?)",
                [(rid, i, "unknown" if i in req.unknown_ids else "pending") for i in req.image_ids],
            )
            self._history(cur, request_id=rid, message_id=req.message_id, event="ingested", from_state=None,
                          to_state=state, detail={"reason": reason, "ids": len(req.image_ids),
                                                  "unknown": len(req.unknown_ids), "sender": req.sender,
                                                  "dkim": req.dkim, "source": req.source}, time=now)
            return rid, True

    def approve(self, request_id: int, *, note: str = "") -> None:
        """Operator decision: move a ``review`` (or ``quarantined``) request to ``received`` so apply takes it."""
        with self._tx() as cur:
            row = cur.execute("SELECT state, message_id FROM requests WHERE id = ?", (request_id,)).fetchone()
            if row is None:
                raise ValueError(f"no request with id {request_id}")
            if row[0] not in ("review", "quarantined"):
                raise ValueError(f"request {request_id} is {row[0]!r}; only review/quarantined can be approved")
            cur.execute("UPDATE requests SET state='received' WHERE id = ?", (request_id,))
            self._history(cur, request_id=request_id, message_id=row[1], event="approved", from_state=row[0],
                          to_state="received", detail={"note": note})

    # -- apply --------------------------------------------------------------------------------------------
    def requests(self, state: str | None = None) -> list[RequestRow]:
        if state is None:
            rows = self._conn.execute(f"SELECT {_REQ_COLS} FROM requests ORDER BY id").fetchall()
        else:
            if state not in STATES:
                raise ValueError(f"unknown state {state!r}; expected one of {STATES}")
            rows = self._conn.execute(f"SELECT {_REQ_COLS} FROM requests WHERE state = ? ORDER BY id",
                                      (state,)).fetchall()
        return [RequestRow(*r) for r in rows]

    def request(self, request_id: int) -> RequestRow:
        row = self._conn.execute(f"SELECT {_REQ_COLS} FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise KeyError(request_id)
        return RequestRow(*row)

    def raw_message(self, request_id: int) -> bytes | None:
        row = self._conn.execute("SELECT raw FROM requests WHERE id = ?", (request_id,)).fetchone()
        return None if row is None else row[0]

    def request_ids(self, request_id: int) -> list[RequestedId]:
        rows = self._conn.execute(
            "SELECT request_id, image_id, status, release FROM request_ids WHERE request_id = ? ORDER BY image_id",
            (request_id,),
        ).fetchall()
        return [RequestedId(*r) for r in rows]

    def block_images(self, release: int, outcomes: Sequence["ApplyOutcome"]) -> None:
        """Add removed images to the blocklist (before the release is touched: a crash never un-blocks)."""
        now = utcnow()
        with self._tx() as cur:
            for out in outcomes:
                for b in out.removed:
                    cur.execute(
                        "INSERT OR IGNORE INTO blocklist(image_id, content_sha256, sha256, request_id, release, "
                        "added_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (b.image_id, b.content_sha256, b.sha256, out.request_id, release, now),
                    )

    def record_applied(self, release: int, outcomes: Sequence["ApplyOutcome"], *, time: str | None = None) -> None:
        """One transaction: IDs removed/not found, blocklist entries, requests -> applied. Idempotent."""
        now = time or utcnow()
        with self._tx() as cur:
            for out in outcomes:
                row = cur.execute("SELECT state, message_id FROM requests WHERE id = ?", (out.request_id,)).fetchone()
                if row is None or row[0] != "received":
                    continue
                for b in out.removed:
                    cur.execute("UPDATE request_ids SET status='removed', release=? WHERE request_id=? AND image_id=?",
                                (release, out.request_id, b.image_id))
                    cur.execute(
                        "INSERT OR IGNORE INTO blocklist(image_id, content_sha256, sha256, request_id, release, "
                        "added_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (b.image_id, b.content_sha256, b.sha256, out.request_id, release, now),
                    )
                for image_id in out.already_removed:
                    prev = cur.execute("SELECT release FROM blocklist WHERE image_id = ?", (image_id,)).fetchone()
                    cur.execute("UPDATE request_ids SET status='removed', release=? WHERE request_id=? AND image_id=?",
                                (prev[0] if prev else None, out.request_id, image_id))
                for image_id in out.not_found:
                    cur.execute("UPDATE request_ids SET status='not_found', release=? "
                                "WHERE request_id=? AND image_id=?", (release, out.request_id, image_id))
                cur.execute("UPDATE requests SET state='applied', applied_release=? WHERE id=?",
                            (release, out.request_id))
                self._history(cur, request_id=out.request_id, message_id=row[1], event="applied",
                              from_state="received", to_state="applied", time=now,
                              detail={"release": release, "removed": sorted(b.image_id for b in out.removed),
                                      "already_removed": sorted(out.already_removed),
                                      "not_found": sorted(out.not_found)})

    # -- notify -------------------------------------------------------------------------------------------
    def mark_notified(self, request_id: int, *, channel: str) -> None:
        now = utcnow()
        with self._tx() as cur:
            row = cur.execute("SELECT state, message_id FROM requests WHERE id = ?", (request_id,)).fetchone()
            if row is None or row[0] != "applied":
                return
            cur.execute("UPDATE requests SET state='notified', notified_at=? WHERE id=?", (now, request_id))
            self._history(cur, request_id=request_id, message_id=row[1], event="notified", from_state="applied",
                          to_state="notified", detail={"channel": channel}, time=now)

    def note_event(self, request_id: int | None, event: str, detail: dict[str, Any]) -> None:
        """Append a history event that does not change state (e.g. a failed notification)."""
        with self._tx() as cur:
            mid = ""
            if request_id is not None:
                row = cur.execute("SELECT message_id FROM requests WHERE id = ?", (request_id,)).fetchone()
                mid = row[0] if row else ""
            self._history(cur, request_id=request_id, message_id=mid, event=event, from_state=None,
                          to_state=None, detail=detail)

    # -- read API for build / audit -----------------------------------------------------------------------
    def blocked_image_ids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT image_id FROM blocklist")}

    def blocked_content_hashes(self) -> set[str]:
        out: set[str] = set()
        for content, published in self._conn.execute("SELECT content_sha256, sha256 FROM blocklist"):
            out.update(h for h in (content, published) if h)
        return out

    def blocklist(self) -> list[BlockEntry]:
        rows = self._conn.execute(
            "SELECT image_id, content_sha256, sha256, request_id, release FROM blocklist ORDER BY image_id")
        return [BlockEntry(*r) for r in rows]

    def history(self) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT seq, time, request_id, message_id, event, from_state, to_state, detail FROM history ORDER BY seq")
        return [{"seq": s, "time": t, "request_id": rid, "message_id": mid, "event": ev, "from_state": fs,
                 "to_state": ts, "detail": json.loads(d)} for s, t, rid, mid, ev, fs, ts, d in rows]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for state, n in self._conn.execute("SELECT state, COUNT(*) FROM requests GROUP BY state"):
            out[state] = int(n)
        return out


@dataclass(frozen=True)
class RemovedImage:
    image_id: str
    content_sha256: str
    sha256: str


@dataclass(frozen=True)
class ApplyOutcome:
    """What apply did for one request (input to ``Ledger.record_applied``)."""

    request_id: int
    removed: tuple[RemovedImage, ...]
    already_removed: tuple[str, ...]
    not_found: tuple[str, ...]


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``) on the ledger's connection, serialised per object."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def __enter__(self) -> sqlite3.Cursor:
        self.ledger._lock.acquire()
        self.cur = self.ledger._conn.cursor()
        self.cur.execute("BEGIN IMMEDIATE")
        return self.cur

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.cur.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.ledger._lock.release()


def _split_sql(script: str) -> Iterator[str]:
    """Split the schema into statements (triggers contain ';' inside BEGIN ... END)."""
    buf: list[str] = []
    for line in script.strip().splitlines():
        buf.append(line)
        joined = "\n".join(buf).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            yield joined
            buf = []
    if "".join(buf).strip():
        yield "\n".join(buf)


def _parse_time(iso: str) -> datetime:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)

