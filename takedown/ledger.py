"""The takedown ledger: SQLite (WAL, versioned schema), requests, their IDs, the blocklist, an append-only history.

States of a request: ``received`` -> ``applied`` (release N) -> ``notified``; or ``quarantined`` (over a limit,
unparseable, policy) or ``review`` (not authenticated, or over a limit of ``takedown.policy``: a person decides,
``approve`` -> ``received``, ``reject`` -> ``rejected``). Every decision, automatic or a person's, is in the
history with who/when/why; ``decided_by`` says who accepted a request (``policy`` = automatically).
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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from veilset.release import storage

if TYPE_CHECKING:
    from veilset.takedown.policy import TrustPolicy

# v2: rejected state, authenticity, auth_domain, auth_detail, decided_by; v3: blocklist pdq, pixels_sha256;
# v4: blocklist_windows (the crop windows' PDQ hashes of removed images)
SCHEMA_VERSION = 4

STATES = ("received", "applied", "notified", "quarantined", "review", "rejected")
AUTOMATIC = "policy"  # decided_by of requests the trust policy accepted without a person
ID_STATUSES = ("pending", "unknown", "removed", "not_found")

_REQUESTS_TABLE = f"""(
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
    notified_at TEXT,
    authenticity TEXT NOT NULL DEFAULT '',
    auth_domain TEXT NOT NULL DEFAULT '',
    auth_detail TEXT NOT NULL DEFAULT '',
    decided_by TEXT NOT NULL DEFAULT ''
)"""
_REQUEST_INDEXES = """
CREATE INDEX IF NOT EXISTS requests_state ON requests(state);
CREATE INDEX IF NOT EXISTS requests_sender ON requests(sender, received_at);
CREATE INDEX IF NOT EXISTS requests_auth ON requests(authenticity, auth_domain, received_at);
"""
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS requests {_REQUESTS_TABLE};
{_REQUEST_INDEXES}
CREATE TABLE IF NOT EXISTS request_ids (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    image_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in ID_STATUSES)})),
    release INTEGER,
    PRIMARY KEY (request_id, image_id)
);
CREATE INDEX IF NOT EXISTS request_ids_image ON request_ids(image_id);
CREATE TABLE IF NOT EXISTS request_photos (
    request_id INTEGER NOT NULL REFERENCES requests(id),
    pdq TEXT NOT NULL,
    PRIMARY KEY (request_id, pdq)
);
CREATE TABLE IF NOT EXISTS blocklist (
    image_id TEXT PRIMARY KEY,
    content_sha256 TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    request_id INTEGER REFERENCES requests(id),
    release INTEGER,
    added_at TEXT NOT NULL,
    pdq TEXT NOT NULL DEFAULT '',
    pixels_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS blocklist_windows (
    image_id TEXT PRIMARY KEY REFERENCES blocklist(image_id),
    hashes BLOB NOT NULL
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
    # a request by photo: the PDQ hashes (hex; a photo's dihedral and border-trimmed variants) of the photos it
    # sent or the hashes it quoted; apply removes the published images within MATCH_DISTANCE of any
    photo_pdq: tuple[str, ...] = ()
    reason: str = ""
    dkim: str = "none"
    dkim_domain: str = ""
    auth_results: str = ""
    size: int = 0
    raw_sha256: str = ""
    raw: bytes | None = field(default=None, repr=False)
    authenticity: str = ""  # takedown.authenticity verdict: verified | unverified | failed ('' = not assessed)
    auth_domain: str = ""  # organizational domain of the aligned signer (verified only): the limits' key
    auth_detail: str = ""  # JSON: the assessment (every DKIM result and its source)


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
    authenticity: str = ""
    auth_domain: str = ""
    auth_detail: str = ""
    decided_by: str = ""

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
             "auth_results, size, raw_sha256, applied_release, notified_at, authenticity, auth_domain, auth_detail, "
             "decided_by")
_V1_COLS = ("id, message_id, sender, date_header, received_at, source, state, reason, dkim, dkim_domain, "
            "auth_results, size, raw_sha256, raw, applied_release, notified_at")


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
        version = 0
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
            if version == 0:  # a new ledger
                for stmt in _split_sql(_SCHEMA):
                    cur.execute(stmt)
                cur.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),))
                return
        if version not in (1, 2, 3):
            raise ValueError(f"{self.path}: ledger schema version {version} cannot be migrated")
        if version == 1:
            self._migrate_v1_to_v2()
        if version <= 2:
            self._migrate_v2_to_v3()
        self._migrate_v3_to_v4()

    def _migrate_v3_to_v4(self) -> None:
        """v3 -> v4: ``blocklist_windows`` (images removed before have none: their PDQ still blocks copies)."""
        with self._tx() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or int(row[0]) != 3:
                return
            for stmt in _split_sql(_SCHEMA):
                cur.execute(stmt)
            cur.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
            self._history(cur, request_id=None, message_id="", event="schema_migrated", from_state=None,
                          to_state=None, detail={"from": 3, "to": 4})

    def _migrate_v2_to_v3(self) -> None:
        """v2 -> v3 in one transaction: the blocklist gets the removed images' fingerprints (``pdq``,
        ``pixels_sha256``; '' for images removed before: their IDs and hashes still block them), and requests by
        photo their hashes (``request_photos``)."""
        with self._tx() as cur:
            row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None or int(row[0]) != 2:  # another process migrated it meanwhile
                return
            have = {r[1] for r in cur.execute("PRAGMA table_info(blocklist)")}
            for column in ("pdq", "pixels_sha256"):
                if column not in have:
                    cur.execute(f"ALTER TABLE blocklist ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
            for stmt in _split_sql(_SCHEMA):  # request_photos
                cur.execute(stmt)
            cur.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
            self._history(cur, request_id=None, message_id="", event="schema_migrated", from_state=None,
                          to_state=None, detail={"from": 2, "to": 3})

    def _migrate_v1_to_v2(self) -> None:
        """v1 -> v2 in one transaction: new columns, and the requests table rebuilt for the new state CHECK
        (SQLite cannot alter a CHECK; its documented 12-step procedure, foreign keys off meanwhile). Requests
        accepted under v1 keep ``decided_by`` '' (they never count towards v2's automatic limits)."""
        self._conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self._tx() as cur:
                row = cur.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None or int(row[0]) != 1:  # another process migrated it meanwhile
                    return
                seq = cur.execute("SELECT seq FROM sqlite_sequence WHERE name='requests'").fetchone()
                cur.execute(f"CREATE TABLE requests_v2 {_REQUESTS_TABLE}")
                cur.execute(f"INSERT INTO requests_v2 ({_V1_COLS}) SELECT {_V1_COLS} FROM requests")
                cur.execute("DROP TABLE requests")
                cur.execute("ALTER TABLE requests_v2 RENAME TO requests")
                if seq is not None:
                    cur.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name='requests'", (seq[0],))
                for stmt in _split_sql(_SCHEMA):  # indexes (and anything else missing)
                    cur.execute(stmt)
                broken = cur.execute("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise ValueError(f"{self.path}: foreign keys broken by the v1 -> v2 migration: {broken[:5]}")
                cur.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
                self._history(cur, request_id=None, message_id="", event="schema_migrated", from_state=None,
                              to_state=None, detail={"from": 1, "to": 2})
        finally:
            self._conn.execute("PRAGMA foreign_keys=ON")

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

    def automatic_usage(self, since_iso: str, *, org_domain: str | None = None) -> int:
        """Image IDs in requests accepted automatically since ``since_iso``: of the verified signing
        organization ``org_domain``, or (None) of all unverified mail. What the trust policy's limits count."""
        return _automatic_usage(self._conn.cursor(), since_iso, org_domain)

    def add_request(self, req: NewRequest, *, received_at: str | None = None,
                    trust: "TrustPolicy | None" = None) -> tuple[int, bool]:
        """Record one message. Returns ``(request_id, created)``; an already-seen Message-ID is not added again.

        With ``trust`` (``takedown.policy.TrustPolicy``), a ``received`` request is accepted automatically only
        if the policy allows it given the automatic removals of the last 24 hours (counted inside the same
        transaction, so concurrent ingests cannot both take the last of a budget); otherwise it goes to
        ``review`` with the reason. Without ``trust`` the state is recorded as given (tests, tools).
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
            state, reason, decided_by = req.state, req.reason, ""
            if state == "received" and trust is not None:
                from veilset.takedown.policy import decide

                since = (_parse_time(now) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                verified = req.authenticity == "verified" and bool(req.auth_domain)
                decision = decide(
                    trust, authenticity=req.authenticity or "unverified", org_domain=req.auth_domain,
                    auth_reason=_auth_reason(req.auth_detail), n_ids=len(set(req.image_ids)) + bool(req.photo_pdq),
                    used_by_domain=_automatic_usage(cur, since, req.auth_domain) if verified else 0,
                    used_unverified=0 if verified else _automatic_usage(cur, since, None))
                state, reason = decision.state, decision.reason
                decided_by = AUTOMATIC if decision.automatic else ""
            cur.execute(
                "INSERT INTO requests(message_id, sender, date_header, received_at, source, state, reason, dkim, "
                "dkim_domain, auth_results, size, raw_sha256, raw, authenticity, auth_domain, auth_detail, "
                "decided_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (req.message_id, req.sender, req.date_header, now, req.source, state, reason, req.dkim,
                 req.dkim_domain, req.auth_results, req.size, req.raw_sha256, req.raw, req.authenticity,
                 req.auth_domain, req.auth_detail, decided_by),
            )
            rid = int(cur.lastrowid)
            _insert_wanted(cur, rid, req)
            self._history(cur, request_id=rid, message_id=req.message_id, event="ingested", from_state=None,
                          to_state=state, detail={"reason": reason, "ids": len(req.image_ids),
                                                  **({"photo_hashes": len(req.photo_pdq)} if req.photo_pdq else {}),
                                                  "unknown": len(req.unknown_ids), "sender": req.sender,
                                                  "dkim": req.dkim, "source": req.source,
                                                  "authenticity": req.authenticity,
                                                  "auth_domain": req.auth_domain,
                                                  "decided_by": decided_by}, time=now)
            return rid, True

    def approve(self, request_id: int, *, note: str = "", by: str = "operator") -> None:
        """A person's decision: a ``review`` (or ``quarantined``) request becomes ``received`` (apply takes it),
        recorded in the history with who and why. Approved requests do not use the automatic budgets."""
        self._decide(request_id, event="approved", to_state="received", by=by, why=note)

    def reject(self, request_id: int, *, reason: str, by: str = "operator") -> None:
        """A person's decision: a ``review`` (or ``quarantined``) request becomes ``rejected`` (final; nothing
        is removed, no receipt), recorded in the history with who and why."""
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("a rejection needs a reason")
        self._decide(request_id, event="rejected", to_state="rejected", by=by, why=reason)

    def _decide(self, request_id: int, *, event: str, to_state: str, by: str, why: str) -> None:
        by = _one_line(by, 200) or "operator"
        why = _one_line(why, 2000)
        with self._tx() as cur:
            row = cur.execute("SELECT state, message_id, reason FROM requests WHERE id = ?",
                              (request_id,)).fetchone()
            if row is None:
                raise ValueError(f"no request with id {request_id}")
            if row[0] not in ("review", "quarantined"):
                verb = "approved" if event == "approved" else "rejected"
                raise ValueError(f"request {request_id} is {row[0]!r}; only review/quarantined can be {verb}")
            reason = f"{event} by {by}" + (f": {why}" if why else "")  # what it waited for stays in the history
            cur.execute("UPDATE requests SET state = ?, decided_by = ?, reason = ? WHERE id = ?",
                        (to_state, by, reason, request_id))
            self._history(cur, request_id=request_id, message_id=row[1], event=event, from_state=row[0],
                          to_state=to_state, detail={"by": by, "note" if event == "approved" else "reason": why,
                                                     "was_pending_because": row[2]})

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
        """Add removed images to the blocklist (before the release is touched: a crash never un-blocks), and the
        IDs the release did not hold (yet): no later build may publish them."""
        now = utcnow()
        with self._tx() as cur:
            for out in outcomes:
                self._block(cur, out, release, now)

    @staticmethod
    def _block(cur: Any, out: "ApplyOutcome", release: int, now: str) -> None:
        for b in out.removed:
            cur.execute("INSERT OR IGNORE INTO blocklist(image_id, content_sha256, sha256, request_id, release, "
                        "added_at, pdq, pixels_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (b.image_id, b.content_sha256, b.sha256, out.request_id, release, now, b.pdq,
                         b.pixels_sha256))
            if b.windows:
                cur.execute("INSERT OR IGNORE INTO blocklist_windows(image_id, hashes) VALUES (?, ?)",
                            (b.image_id, sqlite3.Binary(b.windows)))
        for image_id in out.not_found:  # no hashes known: the ID alone is blocked
            cur.execute("INSERT OR IGNORE INTO blocklist(image_id, request_id, release, added_at) "
                        "VALUES (?, ?, ?, ?)", (image_id, out.request_id, release, now))

    def record_applied(self, release: int, outcomes: Sequence["ApplyOutcome"], *, time: str | None = None) -> None:
        """One transaction: IDs removed/not found, blocklist entries, requests -> applied. Idempotent."""
        now = time or utcnow()
        with self._tx() as cur:
            for out in outcomes:
                row = cur.execute("SELECT state, message_id FROM requests WHERE id = ?", (out.request_id,)).fetchone()
                if row is None or row[0] != "received":
                    continue
                for b in out.removed:  # near-duplicates and a photo's matches get a row of their own
                    cur.execute("INSERT OR REPLACE INTO request_ids(request_id, image_id, status, release) "
                                "VALUES (?, ?, 'removed', ?)", (out.request_id, b.image_id, release))
                self._block(cur, out, release, now)
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
                                      **({"near_duplicates": [n.to_dict() for n in out.near_duplicates]}
                                         if out.near_duplicates else {}),
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

    def blocked_fingerprints(self) -> tuple[tuple[str, str], ...]:
        """(removed image ID, PDQ hex) of every blocked image whose fingerprint is known, and the photos of applied
        requests by photo (``blocked_photo_hashes``)."""
        rows = self._conn.execute("SELECT image_id, pdq FROM blocklist WHERE pdq != '' ORDER BY image_id")
        return tuple((str(i), str(h)) for i, h in rows) + self.blocked_photo_hashes()

    def blocked_windows(self) -> tuple[tuple[str, bytes], ...]:
        """(removed image ID, its crop windows' PDQ hashes, 32 bytes each: ``fingerprint.window_hashes``)."""
        rows = self._conn.execute("SELECT image_id, hashes FROM blocklist_windows ORDER BY image_id")
        return tuple((str(i), bytes(h)) for i, h in rows)

    def photo_hashes(self, request_id: int) -> tuple[str, ...]:
        """The PDQ hashes of a request by photo (empty for one by IDs)."""
        rows = self._conn.execute("SELECT pdq FROM request_photos WHERE request_id = ? ORDER BY pdq", (request_id,))
        return tuple(str(r[0]) for r in rows)

    def blocked_photo_hashes(self) -> tuple[tuple[str, str], ...]:
        """(request label, PDQ hex) of the photos of applied requests: they block matching images from every later
        build, whether or not the release held one."""
        rows = self._conn.execute(
            "SELECT p.request_id, p.pdq FROM request_photos p JOIN requests r ON r.id = p.request_id "
            "WHERE r.state IN ('applied', 'notified') ORDER BY p.request_id, p.pdq")
        return tuple((f"photo of request {rid}", str(h)) for rid, h in rows)

    def blocked_pixel_hashes(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT pixels_sha256 FROM blocklist WHERE pixels_sha256 != ''")}

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
    pdq: str = ""  # the published pixels' fingerprints, as the release's index has them ("" if it has none)
    pixels_sha256: str = ""
    windows: bytes = b""  # its crop windows' PDQ hashes (``fingerprint.window_hashes``), for a requested image

    def to_list(self) -> list[str]:
        return [self.image_id, self.content_sha256, self.sha256, self.pdq, self.pixels_sha256, self.windows.hex()]

    @classmethod
    def from_list(cls, row: Sequence[str]) -> "RemovedImage":
        return cls(*row[:5], windows=bytes.fromhex(row[5]) if len(row) > 5 else b"")


@dataclass(frozen=True)
class NearDuplicate:
    """A published image within a PDQ distance of an image a request removes (``release.fingerprint``)."""

    image_id: str
    of: str  # the requested image it is a near-duplicate of
    distance: int

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "of": self.of, "distance": self.distance}


@dataclass(frozen=True)
class ApplyOutcome:
    """What apply did for one request (input to ``Ledger.record_applied``). ``near_duplicates``: images removed
    with the requested ones (within ``MATCH_DISTANCE``; they are in ``removed`` too); ``review``: images in the
    grey band, left published and put to a person as a ``review`` request."""

    request_id: int
    removed: tuple[RemovedImage, ...]
    already_removed: tuple[str, ...]
    not_found: tuple[str, ...]
    near_duplicates: tuple[NearDuplicate, ...] = ()
    review: tuple[NearDuplicate, ...] = ()


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


def _insert_wanted(cur: sqlite3.Cursor, rid: int, req: NewRequest) -> None:
    cur.executemany("INSERT OR IGNORE INTO request_ids(request_id, image_id, status) VALUES (?, ?, ?)",
                    [(rid, i, "unknown" if i in req.unknown_ids else "pending") for i in req.image_ids])
    cur.executemany("INSERT OR IGNORE INTO request_photos(request_id, pdq) VALUES (?, ?)",
                    [(rid, h) for h in req.photo_pdq])


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


def _automatic_usage(cur: sqlite3.Cursor, since_iso: str, org_domain: str | None) -> int:
    """IDs of automatically accepted requests since ``since_iso``, verified for ``org_domain`` or unverified."""
    if org_domain is None:
        where, args = "q.authenticity != 'verified'", (since_iso,)
    else:
        where, args = "q.authenticity = 'verified' AND q.auth_domain = ?", (since_iso, org_domain)
    sql = ("SELECT COUNT(*) FROM request_ids r JOIN requests q ON q.id = r.request_id "
           f"WHERE q.received_at >= ? AND q.decided_by = '{AUTOMATIC}' "
           "AND q.state IN ('received', 'applied', 'notified') AND " + where)
    return int(cur.execute(sql, args).fetchone()[0])


def _auth_reason(detail: str) -> str:
    try:
        return str(json.loads(detail).get("reason", "")) if detail else ""
    except (ValueError, AttributeError):
        return ""


def _one_line(text: str, limit: int) -> str:
    return " ".join(str(text or "").split())[:limit]


def _parse_time(iso: str) -> datetime:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)

