"""Apply: remove the images of pending requests from a release; only the shards that hold them are rewritten.

Four named steps, each a function a test can drive on its own, under an exclusive ``flock`` on the release folder
(two applies cannot interleave) after finishing or discarding what an interrupted apply left in ``.takedown/``:

1. ``plan``: which requests, which images are in the release, which shards hold them (reads only);
2. ``stage``: each touched shard's files without those images, written again as the new release's generation
   (``release.shards.without``: new names, ``release.layout``), and the new manifest (``Manifest.after_takedown``)
   are written under ``.takedown/stage/``; the release is untouched;
3. ``commit``: the removed IDs and hashes go into the ledger blocklist, then ``.takedown/journal.json`` is written
   atomically (moves, deletions, outcomes), then it is rolled forward: the staged files are renamed in (new
   names, which the old manifest does not list), the manifest is renamed over the old one (the commit), then
   every file of the touched shards' old generation (removed per-image JPEGs included) is deleted;
4. ``record``: the ledger marks the requests applied; ``.takedown/`` is removed.

Crash safety (a kill at any moment leaves the old release or the new one whole, and a rerun completes): nothing
is ever overwritten in place, and the manifest's rename is the one commit point. Before the journal exists a
rerun throws the stage away; once it exists a rerun replays the roll forward and step 4 (``recover``; every step
is idempotent), which deletes what the old generation left. Untouched shards are never opened for writing: they
stay byte-identical.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from veilset.release import (fingerprint, housekeeping, ids, index, layout, log as release_log, manifest, registry,
                             shards, storage)
from veilset.release.canonical import dumps_json
from veilset.release.format import ShardKey
from veilset.release.lock import ReleaseLock, ReleaseLocked
from veilset.release.manifest import Manifest
from veilset.release.records import ShardFile
from veilset.takedown.find import release_index
from veilset.takedown.ledger import ApplyOutcome, Ledger, NearDuplicate, NewRequest, RemovedImage, RequestRow

log = logging.getLogger(__name__)

WORK_DIR = layout.TAKEDOWN_DIR
JOURNAL = "journal.json"
STAGE = "stage"

Hook = Callable[[str], None]


ApplyLocked = ReleaseLocked  # the name takedown callers know


@dataclass(frozen=True)
class ApplyReport:
    release_before: int
    release_after: int
    requests: int
    removed: tuple[str, ...]
    not_found: tuple[str, ...]
    shards_rewritten: tuple[int, ...]
    shards_deleted: tuple[int, ...]
    recovered: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Plan:
    """What an apply will do: the pending requests, their outcomes, and per shard the images to remove."""

    release_before: int
    requests: tuple[RequestRow, ...]
    outcomes: tuple[ApplyOutcome, ...]  # one per request, same order
    gone: dict[int, frozenset[str]]  # shard -> image IDs to remove (only shards that hold some), sorted by shard

    @property
    def removed(self) -> tuple[str, ...]:
        return tuple(sorted(i for ids_ in self.gone.values() for i in ids_))


@dataclass(frozen=True)
class StagedShard:
    """One touched shard, staged: its rewritten listed files, what to move in and what to delete."""

    shard: int
    files: tuple[ShardFile, ...]
    moves: tuple[str, ...]
    deletes: tuple[str, ...]


@dataclass(frozen=True)
class Journal:
    """The commit record (``.takedown/journal.json``): once written, the apply is rolled forward, even after a
    crash. Every step it drives is idempotent."""

    release_before: int
    release_after: int
    moves: tuple[str, ...]
    deletes: tuple[str, ...]
    outcomes: tuple[ApplyOutcome, ...]
    rewritten: tuple[int, ...]
    emptied: tuple[int, ...]
    time: str

    def to_dict(self) -> dict[str, Any]:
        return {"release_before": self.release_before, "release_after": self.release_after,
                "moves": list(self.moves), "deletes": list(self.deletes),
                "outcomes": [_outcome_json(o) for o in self.outcomes], "rewritten": list(self.rewritten),
                "emptied": list(self.emptied), "time": self.time}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Journal":
        return cls(int(d["release_before"]), int(d["release_after"]), tuple(d["moves"]), tuple(d["deletes"]),
                   tuple(_outcome_from_json(o) for o in d["outcomes"]), tuple(d["rewritten"]),
                   tuple(d["emptied"]), str(d["time"]))


def _outcome_json(o: ApplyOutcome) -> dict[str, Any]:
    return {"request_id": o.request_id,
            "removed": [b.to_list() for b in o.removed],
            "already_removed": list(o.already_removed), "not_found": list(o.not_found),
            "near_duplicates": [n.to_dict() for n in o.near_duplicates], "review": [n.to_dict() for n in o.review]}


def _outcome_from_json(d: dict[str, Any]) -> ApplyOutcome:
    return ApplyOutcome(int(d["request_id"]), tuple(RemovedImage.from_list(r) for r in d["removed"]),
                        tuple(d["already_removed"]), tuple(d["not_found"]),
                        tuple(NearDuplicate(**n) for n in d.get("near_duplicates", [])),
                        tuple(NearDuplicate(**n) for n in d.get("review", [])))


# ------------------------------------------------------------------------------------------------ the apply
def apply_pending(ledger: Ledger, release_dir: str, *, hook: Hook | None = None, lock_wait_s: float = 0.0,
                  now: str | None = None, workers: int | None = None) -> ApplyReport:
    """Apply every ``received`` request of the ledger to the release in ``release_dir`` (a local folder).

    ``workers``: processes that re-encode touched shards in parallel (default: CPU count; 1 = in-process).
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    _check_args(release_dir, workers)
    hook = hook or (lambda _stage: None)
    t0 = time.perf_counter()
    with ReleaseLock(release_dir, wait_s=lock_wait_s, command="takedown apply"):
        recovered = recover(ledger, release_dir, hook=hook)
        current = manifest.read(release_dir)
        p = plan(ledger, release_dir, current)
        before = p.release_before
        if not p.requests or not (p.gone or any(o.not_found for o in p.outcomes)):
            if p.requests:  # nothing of theirs is published: answered (already removed) at once
                ledger.record_applied(before, list(p.outcomes))
                _ask_reviews(ledger, p.outcomes)
            return ApplyReport(before, before, len(p.requests), (), _not_found(p.outcomes), (), (), recovered,
                               time.perf_counter() - t0)
        journal = stage(release_dir, current, p, now=now or _now(), workers=workers)
        hook("staged")
        commit(ledger, release_dir, journal, hook)
        record(ledger, release_dir, journal, hook)
        return ApplyReport(before, journal.release_after, len(p.requests), p.removed, _not_found(p.outcomes),
                           journal.rewritten, journal.emptied, recovered, time.perf_counter() - t0)


def _check_args(release_dir: str, workers: Any) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers!r}")
    if storage.is_remote(release_dir):
        raise ValueError(f"--release: takedown apply needs a local release folder, got {release_dir!r}")
    if not os.path.isdir(release_dir):
        raise ValueError(f"--release: {release_dir!r} is not a folder")
    if not os.path.isfile(os.path.join(release_dir, layout.MANIFEST_NAME)):
        raise ValueError(f"--release: {release_dir!r} is not a veilset release (no {layout.MANIFEST_NAME}); give "
                         f"the --output folder of `veilset build`")


def _not_found(outcomes: Sequence[ApplyOutcome]) -> tuple[str, ...]:
    return tuple(sorted({i for o in outcomes for i in o.not_found}))


# ------------------------------------------------------------------------------------------------ 1. plan
def plan(ledger: Ledger, release_dir: str, current: Manifest) -> Plan:
    """Which pending requests, which of their images the release holds (by its index), and where; with each
    requested image, the published images within ``MATCH_DISTANCE`` of its PDQ (removed too) and those in the
    grey band up to ``REVIEW_DISTANCE`` (put to review)."""
    pending = tuple(ledger.requests("received"))
    wanted = {req.id: _wanted_ids(ledger, req) for req in pending}
    by_photo = _photo_matches(release_dir, {req.id: ledger.photo_hashes(req.id) for req in pending})
    for rid, (matched, _) in by_photo.items():
        wanted[rid] += [i for i in matched if i not in wanted[rid]]
    present = _index_rows(release_dir, current, {i for lst in wanted.values() for i in lst})
    queries = _query_hashes(release_dir, current, {i for lst in wanted.values() for i in lst if i in present})
    near, near_rows = _near_duplicates(release_dir, current, [(r.id, wanted[r.id]) for r in pending], queries)
    present.update(near_rows)
    blocked = ledger.blocked_image_ids() if pending else set()
    windows = {i: q.windows for i, q in queries.items()}
    outcomes = tuple(_outcome(req.id, wanted[req.id], present, blocked, near.get(req.id, ((), ()))[0],
                              near.get(req.id, ((), ()))[1] + by_photo.get(req.id, ((), ()))[1], windows)
                     for req in pending)
    gone: dict[int, set[str]] = {}
    for image_id in present:
        gone.setdefault(ids.shard_of(image_id, current.num_shards), set()).add(image_id)
    return Plan(current.release, pending, outcomes, {s: frozenset(g) for s, g in sorted(gone.items())})


Near = dict[int, tuple[tuple[NearDuplicate, ...], tuple[NearDuplicate, ...]]]


def _photo_matches(release_dir: str, photos: dict[int, tuple[str, ...]]) -> dict[int, tuple[list[str],
                                                                                           tuple[NearDuplicate, ...]]]:
    """Per request by photo: the published images within ``MATCH_DISTANCE`` of any of its hashes (what it asks to
    remove), and those in the grey band (``of`` = "photo": to review)."""
    if not any(photos.values()):
        return {}
    found = release_index(release_dir)
    out = {}
    for rid, hashes in photos.items():
        if hashes:
            matches = found.query(list(hashes), fingerprint.REVIEW_DISTANCE)
            out[rid] = ([m.image_id for m in matches if m.distance <= fingerprint.MATCH_DISTANCE],
                        tuple(NearDuplicate(m.image_id, "photo", m.distance) for m in matches
                              if m.distance > fingerprint.MATCH_DISTANCE))
            log.info("request %d by photo: %s", rid, ", ".join(f"{m.image_id} ({m.distance})" for m in matches))
    return out


def _near_duplicates(release_dir: str, current: Manifest, wanted: list[tuple[int, list[str]]],
                     queries: dict[str, "Query"]) -> tuple[Near, dict[str, dict[str, Any]]]:
    """Per request: (near-duplicates to remove, grey-band ones to review) of its requested images the release
    holds (``queries``), by PDQ, looked up among the index's hashes; and the index rows of those to remove. Each
    image goes to the first request that finds it; requested images are never their own near-duplicates."""
    seeds = [(rid, i, queries[i].hashes()) for rid, lst in wanted for i in lst if i in queries]
    if not seeds:
        return {}, {}
    rows = {r["image_id"]: r for e in current.index for r in index.read(release_dir, e.path) if r.get("pdq")}
    found = fingerprint.NearDuplicateIndex(list(rows), [r["pdq"] for r in rows.values()])
    taken = {i for _, lst in wanted for i in lst}
    out: dict[int, tuple[list[NearDuplicate], list[NearDuplicate]]] = {}
    for rid, seed, hashes in seeds:
        for m in found.query(hashes, fingerprint.REVIEW_DISTANCE):
            if m.image_id in taken:
                continue
            taken.add(m.image_id)
            near = NearDuplicate(m.image_id, seed, m.distance)
            out.setdefault(rid, ([], []))[0 if m.distance <= fingerprint.MATCH_DISTANCE else 1].append(near)
            log.info("request %d: %s is %d bits from requested %s", rid, m.image_id, m.distance, seed)
    removals = {n.image_id: rows[n.image_id] for a, _ in out.values() for n in a}
    return {rid: (tuple(a), tuple(b)) for rid, (a, b) in out.items()}, removals


@dataclass(frozen=True)
class Query:
    """A requested image's PDQ hashes, from its published pixels: all 8 rotations/mirrorings and the picture
    inside its borders (``fingerprint.query_hashes``: a copy stored turned, mirrored or framed), and its crop
    windows (``fingerprint.window_hashes``: a copy cut by up to 10 % per side), which the ledger also keeps so
    that later builds block such crops."""

    variants: tuple[bytes, ...]
    windows: bytes

    def hashes(self) -> list[bytes]:
        seen = dict.fromkeys(self.variants)
        seen.update(dict.fromkeys(fingerprint.split_hashes(self.windows)))
        return list(seen)


def _query_hashes(release_dir: str, current: Manifest, image_ids: set[str]) -> dict[str, Query]:
    """``Query`` of each published image of ``image_ids``, from its published JPEG (read back from its shard)."""
    by_shard: dict[int, set[str]] = {}
    for i in image_ids:
        by_shard.setdefault(ids.shard_of(i, current.num_shards), set()).add(i)
    out: dict[str, Query] = {}
    for shard, wanted in sorted(by_shard.items()):
        for im in shards.read_images(current.key(shard), current.formats, shards.fetcher(release_dir)):
            if im.image_id in wanted:
                pixels = fingerprint.decode_rgb(im.jpeg)
                out[im.image_id] = Query(tuple(fingerprint.query_hashes(pixels, dihedral=True)[0]),
                                         fingerprint.window_hashes(pixels))
    return out


def _wanted_ids(ledger: Ledger, req: RequestRow) -> list[str]:
    return [r.image_id for r in ledger.request_ids(req.id)
            if r.status in ("pending", "unknown") and ids.is_valid_image_id(r.image_id)]


def _index_rows(release_dir: str, current: Manifest, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """image_id -> index row, for the wanted images the release holds (only their shards' index files read)."""
    shards_wanted = {ids.shard_of(i, current.num_shards) for i in wanted}
    present: dict[str, dict[str, Any]] = {}
    for entry in current.index:
        if entry.shard in shards_wanted:
            rows = index.read(release_dir, entry.path)
            present.update((r["image_id"], r) for r in rows if r["image_id"] in wanted)
    return present


def _outcome(request_id: int, wanted: list[str], present: dict[str, dict[str, Any]], blocked: set[str],
             near: tuple[NearDuplicate, ...] = (), review: tuple[NearDuplicate, ...] = (),
             windows: dict[str, bytes] | None = None) -> ApplyOutcome:
    windows = windows or {}
    removed = tuple(RemovedImage(i, present[i]["content_sha256"], present[i]["sha256"],
                                 present[i].get("pdq") or "", present[i].get("pixels_sha256") or "",
                                 windows.get(i, b""))
                    for i in [*wanted, *(n.image_id for n in near)] if i in present)
    already = tuple(i for i in wanted if i not in present and i in blocked)
    missing = tuple(i for i in wanted if i not in present and i not in blocked)
    return ApplyOutcome(request_id, removed, already, missing, near, review)


# ------------------------------------------------------------------------------------------------ 2. stage
def stage(release_dir: str, current: Manifest, p: Plan, *, now: str, workers: int = 1) -> Journal:
    """Write every touched shard's new files and the new manifest under ``.takedown/stage/``; the release itself
    is untouched. Returns the journal that ``commit`` makes durable."""
    stage_dir = os.path.join(release_dir, WORK_DIR, STAGE)
    os.makedirs(stage_dir)
    after = current.release + 1
    jobs = [(release_dir, stage_dir, current.key(s), ShardKey(s, current.num_shards, after), current.formats, gone)
            for s, gone in p.gone.items()]
    staged: list[StagedShard] = _map(_stage_shard, jobs, workers)
    rewritten = [f for s in staged for f in s.files]
    entries = _log_entries(current, p, rewritten, after, now)
    new = current.after_takedown(touched=set(p.gone), rewritten=rewritten, removed=len(p.removed), entries=entries)
    windows = _stage_windows(release_dir, stage_dir, current, p, after)
    if windows is not None:
        new = dataclasses.replace(new, removed_windows=windows)
    manifest.write(stage_dir, new)
    moves = tuple(m for s in staged for m in s.moves) + ((windows[0],) if windows else ())
    deletes = tuple(d for s in staged for d in s.deletes) + (
        (current.removed_windows[0],) if windows and current.removed_windows else ())
    return Journal(p.release_before, after, moves, deletes, p.outcomes,
                   tuple(s.shard for s in staged if s.files), tuple(s.shard for s in staged if not s.files), now)


def _stage_windows(release_dir: str, stage_dir: str, current: Manifest, p: Plan,
                   after: int) -> tuple[str, str] | None:
    """The release's file of removed images' crop windows, with those of this apply's removed images added,
    staged under the new generation: (path, sha256); None when this apply adds none (the listed one stays)."""
    # rows labelled by the removed image's PDQ, never its ID (the release names removed IDs only in its log)
    rows = [(f"pdq {b.pdq}" if b.pdq else f"removed in release {after}", h)
            for o in p.outcomes for b in o.removed for h in fingerprint.split_hashes(b.windows)]
    if not rows:
        return None
    found = fingerprint.read_listed_index(release_dir, current.removed_windows)
    found.add_many([i for i, _ in rows], [h for _, h in rows])
    rel = layout.windows_name(after)
    data = found.to_bytes()
    storage.atomic_write(storage.join(stage_dir, rel), data)
    return rel, ids.sha256_hex(data)


def _stage_shard(job: tuple[str, str, ShardKey, ShardKey, tuple[str, ...], frozenset[str]]) -> StagedShard:
    """One shard without ``gone``, every format through the registry, written into the stage folder under the new
    release's generation (``new_key``); every file of the old generation is deleted after the commit."""
    release_dir, stage_dir, key, new_key, formats, gone = job
    fetch = shards.fetcher(release_dir)
    changes = shards.without(key, new_key, formats, fetch, gone)
    for rel, data in changes.items():
        storage.atomic_write(storage.join(stage_dir, rel), data)
    kept = changes.get(index.path(new_key))
    files = shards.listed_files(new_key, formats, changes, len(index.parse(kept))) if kept else []
    old_ids = [row["image_id"] for row in index.parse(fetch(index.path(key)))]
    return StagedShard(key.shard, tuple(files), tuple(changes), tuple(shards.files_of(key, formats, old_ids)))


def _log_entries(current: Manifest, p: Plan, rewritten: list[ShardFile], after: int,
                 now: str) -> list[release_log.LogEntry]:
    old = {f.path: f.sha256 for f in current.files()}
    new = {f.path: f.sha256 for f in rewritten}
    entries: list[release_log.LogEntry] = []
    for req, out in zip(p.requests, p.outcomes):
        previous = entries[-1] if entries else (current.log[-1] if current.log else None)
        entries.append(release_log.entry_for_request(
            release=after, time=now, request=req.message_id, request_id=req.id,
            removed=[b.image_id for b in out.removed], not_found=out.not_found, num_shards=current.num_shards,
            old_sha256=old, new_sha256=new, previous=previous, removed_pdq=[b.pdq for b in out.removed],
            removed_pixels=[b.pixels_sha256 for b in out.removed],
            near_duplicates=[n.to_dict() for n in out.near_duplicates]))
    return entries


def _map(fn: Callable[[Any], Any], jobs: list[Any], workers: int) -> list[Any]:
    """``map`` over shards, in worker processes when there is more than one shard and one worker (GIL-bound
    encoders); results in job order. Workers only stage files: a crash there leaves the release untouched."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    # fork is cheap but unsafe with other threads alive (a lock held at fork time stays held in the child)
    fork_ok = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    method = "fork" if fork_ok else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(fn, jobs))


# ------------------------------------------------------------------------------------------------ 3. commit
def commit(ledger: Ledger, release_dir: str, journal: Journal, hook: Hook) -> None:
    """Block the removed images (first: even if this apply dies now, no later build can publish them again),
    write the journal (the commit point), then roll the release forward."""
    ledger.block_images(journal.release_after, list(journal.outcomes))
    hook("blocked")
    work = os.path.join(release_dir, WORK_DIR)
    storage.atomic_write(os.path.join(work, JOURNAL), dumps_json(journal.to_dict()))
    storage.fsync_dir(work)
    hook("journal")
    roll_forward(release_dir, journal, hook)


def roll_forward(release_dir: str, journal: Journal, hook: Hook) -> None:
    """Staged files renamed in (new names of the new generation: the old release does not see them), the
    manifest swapped in (the commit), then the old generation's files of the touched shards deleted. Idempotent:
    recovery reruns it."""
    stage_dir = os.path.join(release_dir, WORK_DIR, STAGE)
    for k, rel in enumerate(journal.moves):
        src = storage.join(stage_dir, rel)
        if storage.exists(src):
            storage.move(src, storage.join(release_dir, rel))
        hook(f"moved:{k}")
    for sub in {rel.split("/", 1)[0] for rel in journal.moves} | set(registry.managed_dirs()):
        storage.fsync_dir(os.path.join(release_dir, sub))
    manifest.swap_in(stage_dir, release_dir)
    hook("manifest")
    for k, rel in enumerate(journal.deletes):
        storage.remove(storage.join(release_dir, rel))
        if _per_image(rel):  # its shard folder (images/SSSSS.rGGGGGG/) may be empty now
            storage.remove_empty_dir(os.path.dirname(storage.join(release_dir, rel)))
        hook(f"deleted:{k}")
    housekeeping.remove_superseded(release_dir, set(), manifest.read(release_dir))  # an interrupted build's files
    hook("deleted")


def _per_image(rel: str) -> bool:
    name = registry.format_of(rel)
    return name is not None and name != index.NAME and not registry.get(name).listed


# ------------------------------------------------------------------------------------------------ 4. record
def record(ledger: Ledger, release_dir: str, journal: Journal, hook: Hook) -> None:
    """The ledger marks the requests applied (its history is the takedown's journal of record); the work folder
    (stage and journal.json) is removed."""
    ledger.record_applied(journal.release_after, list(journal.outcomes), time=_iso_ledger(journal.time))
    _ask_reviews(ledger, journal.outcomes)
    hook("ledger")
    work = os.path.join(release_dir, WORK_DIR)
    storage.remove(os.path.join(work, JOURNAL))  # done: from here a leftover stage is only garbage
    storage.fsync_dir(work)
    shutil.rmtree(work)
    storage.fsync_dir(release_dir)


def _ask_reviews(ledger: Ledger, outcomes: Sequence[ApplyOutcome]) -> None:
    for out in outcomes:
        if out.review:
            _ask_review(ledger, out)


def _ask_review(ledger: Ledger, out: ApplyOutcome) -> None:
    """The grey-band near-duplicates of a request's images, left published: a ``review`` request of their own
    (a person approves it with ``takedown status --approve``, and the next apply removes them). Idempotent."""
    req = ledger.request(out.request_id)
    message_id = f"{req.message_id}#near-duplicates"
    if ledger.has_message(message_id):
        return
    why = "; ".join(f"{n.image_id} is {n.distance} bits from "
                    + ("the request's photo" if n.of == "photo" else f"removed {n.of}") for n in out.review)
    ledger.add_request(NewRequest(message_id=message_id, sender=req.sender, date_header="", source="apply",
                                  state="review", image_ids=tuple(n.image_id for n in out.review),
                                  reason=f"near_duplicate_review: {why}"))


def _iso_ledger(stamp: str) -> str:
    return stamp.replace("Z", ".000000Z") if "." not in stamp else stamp


def recover(ledger: Ledger, release_dir: str, *, hook: Hook | None = None) -> bool:
    """Finish (journal present) or discard (no journal) an interrupted apply. Caller holds the lock."""
    work = os.path.join(release_dir, WORK_DIR)
    if not os.path.isdir(work):
        return False
    journal_path = os.path.join(work, JOURNAL)
    if storage.exists(journal_path):
        journal = Journal.from_dict(json.loads(storage.read(journal_path)))
        log.warning("finishing an interrupted takedown apply (release %s -> %s)", journal.release_before,
                    journal.release_after)
        roll_forward(release_dir, journal, hook or (lambda _s: None))
        record(ledger, release_dir, journal, hook or (lambda _s: None))
    else:
        log.warning("discarding the stage of an interrupted takedown apply (release untouched)")
        shutil.rmtree(work)
    return True
