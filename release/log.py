"""The release log: the takedown history a release carries in its manifest (``log``), one entry per request.

The only place where removed image IDs may appear in a release (the audit trail: which request removed which
IDs from which shard files, with the files' hashes before and after). An entry also carries the fingerprints of
the images it removed (``removed_pdq``, ``removed_pixels``: hashes, never IDs), so that a later build of the
release blocks their copies and near-duplicates even without the ledger.

The entries form a hash chain: each one's ``prev_sha256`` is the sha256 of the canonical JSON of the entry before
it (``entry_sha256``; None for the first), so an entry edited or deleted anywhere but at the end breaks the next
one's link (``chain_problems``). Entries written before chaining carry no ``prev_sha256`` (``UNCHAINED``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from veilset.release import ids, layout
from veilset.release.canonical import dumps_compact

UNCHAINED = ""  # prev_sha256 of an entry written before chaining (no key in the manifest)


@dataclass(frozen=True)
class ShardChange:
    """One shard file a request changed: its hash before, and after (None: deleted, the shard emptied), and the
    path it was written again under (the takedown's generation; None: the same path, or deleted)."""

    path: str
    old_sha256: str
    new_sha256: str | None
    new_path: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"path": self.path, "old_sha256": self.old_sha256, "new_sha256": self.new_sha256}
        if self.new_path is not None:
            out["new_path"] = self.new_path
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ShardChange":
        return cls(str(d["path"]), str(d["old_sha256"]), d.get("new_sha256"), d.get("new_path"))


@dataclass(frozen=True)
class LogEntry:
    release: int  # the release this request's removals first appear in
    time: str
    request: str  # the request's Message-ID
    removed: tuple[str, ...]  # sorted image IDs
    shards: tuple[ShardChange, ...]
    request_id: int | None = None  # the ledger's request id
    not_found: tuple[str, ...] | None = None  # sorted IDs the request named that the release never had
    removed_pdq: tuple[str, ...] | None = None  # sorted PDQ hex of the removed images (release.fingerprint)
    removed_pixels: tuple[str, ...] | None = None  # sorted pixels_sha256 of the removed images
    # removed images the request did not name: near-duplicates of those it did ({"image_id", "of", "distance"})
    near_duplicates: tuple[dict[str, Any], ...] | None = None
    prev_sha256: str | None = UNCHAINED  # entry_sha256 of the entry before (None: the first entry)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"release": self.release, "time": self.time, "request": self.request}
        if self.request_id is not None:
            out["request_id"] = self.request_id
        out["removed"] = list(self.removed)
        if self.not_found is not None:
            out["not_found"] = list(self.not_found)
        if self.removed_pdq is not None:
            out["removed_pdq"] = list(self.removed_pdq)
        if self.removed_pixels is not None:
            out["removed_pixels"] = list(self.removed_pixels)
        if self.near_duplicates:
            out["near_duplicates"] = [dict(n) for n in self.near_duplicates]
        out["shards"] = [s.to_dict() for s in self.shards]
        if self.prev_sha256 != UNCHAINED:
            out["prev_sha256"] = self.prev_sha256
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LogEntry":
        not_found, pdq, pixels = d.get("not_found"), d.get("removed_pdq"), d.get("removed_pixels")
        return cls(int(d["release"]), str(d["time"]), str(d["request"]), tuple(d["removed"]),
                   tuple(ShardChange.from_dict(s) for s in d["shards"]), d.get("request_id"),
                   None if not_found is None else tuple(not_found), None if pdq is None else tuple(pdq),
                   None if pixels is None else tuple(pixels),
                   tuple(dict(n) for n in d["near_duplicates"]) if d.get("near_duplicates") else None,
                   d.get("prev_sha256", UNCHAINED))


def entry_sha256(entry: Mapping[str, Any]) -> str:
    """sha256 of one log entry's canonical JSON (as the manifest holds it: ``LogEntry.to_dict``)."""
    return ids.sha256_hex(dumps_compact(dict(entry)))


def entry_for_request(*, release: int, time: str, request: str, request_id: int, removed: Sequence[str],
                      not_found: Sequence[str], num_shards: int, old_sha256: Mapping[str, str],
                      new_sha256: Mapping[str, str | None], previous: LogEntry | None,
                      removed_pdq: Sequence[str] = (), removed_pixels: Sequence[str] = (),
                      near_duplicates: Sequence[Mapping[str, Any]] = ()) -> LogEntry:
    """The log entry of one applied request: the files (of every format) of the shards its removals touched,
    chained to ``previous`` (the log's last entry; None: this is the first).

    ``old_sha256``: every listed file of the release before; ``new_sha256``: the rewritten files, under the new
    release's generation (absent: deleted).
    """
    touched = {ids.shard_of(i, num_shards) for i in removed}
    files = [p for p in sorted(old_sha256) if layout.shard_number(p) in touched]
    moved = {p: layout.with_generation(p, release) for p in files}
    changes = tuple(ShardChange(p, old_sha256[p], new_sha256.get(moved[p]),
                                moved[p] if moved[p] in new_sha256 and moved[p] != p else None) for p in files)
    prev = None if previous is None else entry_sha256(previous.to_dict())
    return LogEntry(release, time, request, tuple(sorted(removed)), changes, request_id, tuple(sorted(not_found)),
                    tuple(sorted({h for h in removed_pdq if h})), tuple(sorted({h for h in removed_pixels if h})),
                    tuple(dict(n) for n in near_duplicates) or None, prev)


def chain_problems(log: Sequence[Mapping[str, Any]]) -> tuple[list[str], int]:
    """Broken links of a release log as the manifest holds it (dicts, oldest first), and how many entries at
    its start were written before chaining (no ``prev_sha256``: not a problem). After the first chained entry
    every entry must be chained to the one before it."""
    problems: list[str] = []
    unchained = 0
    for i, entry in enumerate(log):
        if "prev_sha256" not in entry:
            if i == unchained:
                unchained += 1
            else:
                problems.append(f"log entry {i} has no prev_sha256 although the log is chained before it")
            continue
        want = None if i == 0 else entry_sha256(log[i - 1])
        if entry["prev_sha256"] != want:
            what = "the first entry must have none" if want is None else f"entry {i - 1} hashes to {want}"
            problems.append(f"log entry {i}: prev_sha256 {entry['prev_sha256']!r} but {what} "
                            "(an entry was edited, deleted or reordered)")
    return problems, unchained


def blocked_ids(log: Sequence[LogEntry]) -> frozenset[str]:
    """Every image ID a request in the log asked to remove: those removed, and those the release did not hold
    (yet): no later build of the release may publish any of them."""
    return frozenset(i for e in log for i in (*e.removed, *(e.not_found or ())))


def removed_ids(log: Sequence[LogEntry]) -> frozenset[str]:
    """Every image ID the log says was removed."""
    return frozenset(i for e in log for i in e.removed)


def blocked_pdq(log: Sequence[LogEntry]) -> tuple[tuple[str, str], ...]:
    """(the request's Message-ID, PDQ hex) of every image the log says was removed: a later build blocks each
    image within ``fingerprint.MATCH_DISTANCE`` of one (its copies and near-duplicates)."""
    return tuple(sorted({(e.request, h) for e in log for h in (e.removed_pdq or ())}))


def blocked_pixels(log: Sequence[LogEntry]) -> frozenset[str]:
    """The pixels_sha256 of every image the log says was removed."""
    return frozenset(h for e in log for h in (e.removed_pixels or ()))
