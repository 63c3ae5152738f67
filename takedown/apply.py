"""Apply: remove the images of pending requests from a release; only the shards that hold them are rewritten.

Crash safety (a kill at any moment leaves the old or the new release, and a rerun completes):

1. under an exclusive ``flock`` on the release folder (two applies cannot interleave), finish or discard what an
   earlier, interrupted apply left in ``.takedown/``;
2. stage: the rewritten shard files (encoded by ``pipeline.shards.shard_payloads``) and the new manifest are
   written under ``.takedown/stage/``; the removed images' IDs and hashes go into the ledger blocklist;
3. commit point: ``.takedown/journal.json`` is written atomically (the moves, the deletions, the outcomes);
4. roll forward: staged files are renamed over the old ones, emptied shards and removed per-image JPEGs are
   deleted, the manifest is replaced last; the ledger marks the requests applied; ``.takedown/`` is removed.

Before the journal exists a rerun throws the stage away (the release was never touched); once it exists a rerun
replays step 4 (every step is idempotent). Old shard versions are replaced by rename, so no copy of a removed
image stays in the folder. Untouched shards are never opened for writing: they stay byte-identical.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from veilset.pipeline import ids
from veilset.pipeline.manifest import MANIFEST_NAME, atomic_write_bytes, dumps_json, join, load_manifest, read_bytes
from veilset.pipeline import shards
from veilset.takedown.ledger import ApplyOutcome, Ledger, RemovedImage

log = logging.getLogger(__name__)

WORK_DIR = ".takedown"
JOURNAL = "journal.json"
STAGE = "stage"

Hook = Callable[[str], None]


class ApplyLocked(RuntimeError):
    pass


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


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ReleaseLock:
    """Exclusive, non-blocking ``flock`` on the release folder itself (no lock file left behind)."""

    def __init__(self, release_dir: str, *, wait_s: float = 0.0) -> None:
        self.release_dir = release_dir
        self.wait_s = wait_s
        self.fd: int | None = None

    def __enter__(self) -> "ReleaseLock":
        self.fd = os.open(self.release_dir, os.O_RDONLY)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise ApplyLocked(f"another takedown apply holds the lock on {self.release_dir!r}") from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _entry(fmt: str, shard: int, rel: str, data: bytes, images: int) -> dict[str, Any]:
    return {"format": fmt, "shard": shard, "path": rel, "sha256": ids.sha256_hex(data), "images": images}


def _fmt_of(rel: str) -> str:
    return rel.split("/", 1)[0]


def apply_pending(ledger: Ledger, release_dir: str, *, hook: Hook | None = None, lock_wait_s: float = 0.0,
                  now: str | None = None, workers: int | None = None) -> ApplyReport:
    """Apply every ``received`` request of the ledger to the release in ``release_dir`` (a local folder).

    ``workers``: processes that re-encode touched shards in parallel (default: CPU count; 1 = in-process).
    """
    workers = (os.cpu_count() or 1) if workers is None else workers
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers!r}")
    if "://" in release_dir:
        raise ValueError(f"--release: takedown apply needs a local release folder, got {release_dir!r}")
    if not os.path.isdir(release_dir):
        raise ValueError(f"--release: {release_dir!r} is not a folder")
    hook = hook or (lambda _stage: None)
    t0 = time.perf_counter()
    with ReleaseLock(release_dir, wait_s=lock_wait_s):
        recovered = recover(ledger, release_dir, hook=hook)
        manifest = load_manifest(release_dir)
        before = int(manifest["release"])
        pending = ledger.requests("received")
        if not pending:
            return ApplyReport(before, before, 0, (), (), (), (), recovered, time.perf_counter() - t0)
        num_shards = int(manifest["num_shards"])
        formats = list(manifest["formats"])

        wanted: dict[int, list[str]] = {}
        for req in pending:
            wanted[req.id] = [r.image_id for r in ledger.request_ids(req.id)
                              if r.status in ("pending", "unknown") and ids.is_valid_image_id(r.image_id)]
        all_ids = {i for lst in wanted.values() for i in lst}
        index_by_shard = {int(e["shard"]): e for e in manifest["index"]}
        by_shard: dict[int, set[str]] = {}
        for image_id in all_ids:
            by_shard.setdefault(ids.shard_of(image_id, num_shards), set()).add(image_id)
        present: dict[str, dict[str, Any]] = {}  # image_id -> index row
        for shard, shard_ids in sorted(by_shard.items()):
            entry = index_by_shard.get(shard)
            if entry is None:
                continue
            for row in shards.read_index(release_dir, entry["path"]):
                if row["image_id"] in shard_ids:
                    present[row["image_id"]] = row
        blocked = ledger.blocked_image_ids()
        outcomes = []
        for req in pending:
            rm = tuple(RemovedImage(i, present[i]["content_sha256"], present[i]["sha256"])
                       for i in wanted[req.id] if i in present)
            already = tuple(i for i in wanted[req.id] if i not in present and i in blocked)
            missing = tuple(i for i in wanted[req.id] if i not in present and i not in blocked)
            outcomes.append(ApplyOutcome(req.id, rm, already, missing))
        if not present:
            ledger.record_applied(before, outcomes)
            return ApplyReport(before, before, len(pending), (), _not_found(outcomes), (), (), recovered,
                               time.perf_counter() - t0)

        after = before + 1
        work = os.path.join(release_dir, WORK_DIR)
        stage = os.path.join(work, STAGE)
        os.makedirs(stage)
        moves: list[str] = []
        deletes: list[str] = []
        new_entries: dict[str, dict[str, Any]] = {}  # rel path -> manifest entry
        old_sha = {e["path"]: e["sha256"] for e in manifest["shards"] + manifest["index"]}
        rewritten, emptied = [], []
        touched = sorted({ids.shard_of(i, num_shards) for i in present})
        jobs = [(release_dir, manifest, shard, frozenset(i for i in present if ids.shard_of(i, num_shards) == shard),
                 stage) for shard in touched]
        for shard, gone, staged in _map(_stage_shard, jobs, workers):
            old_paths = [e["path"] for e in manifest["shards"] + manifest["index"] if int(e["shard"]) == shard]
            if staged:
                for entry in staged:
                    moves.append(entry["path"])
                    new_entries[entry["path"]] = entry
                deletes.extend(p for p in old_paths if p not in new_entries)
                rewritten.append(shard)
            else:
                deletes.extend(old_paths)
                emptied.append(shard)
            if "coco" in formats:
                deletes.extend(sorted(ids.image_path(i, shard) for i in gone))

        new_manifest = json.loads(json.dumps(manifest))
        new_manifest["release"] = after
        for key in ("shards", "index"):
            kept = []
            for e in manifest[key]:
                if int(e["shard"]) in touched:
                    if e["path"] in new_entries:
                        kept.append(new_entries[e["path"]])
                else:
                    kept.append(e)
            new_manifest[key] = kept
        counts = dict(manifest["counts"])
        counts["published"] = int(counts["published"]) - len(present)
        counts["removed"] = int(counts.get("removed", 0)) + len(present)
        new_manifest["counts"] = counts
        stamp = now or _now()
        log_entries = list(manifest.get("log", []))
        for out, req in zip(outcomes, pending):
            req_shards = sorted({ids.shard_of(b.image_id, num_shards) for b in out.removed})
            files = [p for p in sorted(old_sha) if int(_shard_of_path(p)) in req_shards]
            log_entries.append({
                "release": after, "time": stamp, "request": req.message_id, "request_id": req.id,
                "removed": sorted(b.image_id for b in out.removed), "not_found": sorted(out.not_found),
                "shards": [{"path": p, "old_sha256": old_sha[p],
                            "new_sha256": new_entries[p]["sha256"] if p in new_entries else None} for p in files],
            })
        new_manifest["log"] = log_entries
        atomic_write_bytes(os.path.join(stage, MANIFEST_NAME), dumps_json(new_manifest))
        hook("staged")
        # Block first: even if this apply dies now, no later build can publish these images again.
        ledger.block_images(after, outcomes)
        hook("blocked")
        journal = {"release_before": before, "release_after": after, "moves": moves, "deletes": deletes,
                   "outcomes": [_outcome_json(o) for o in outcomes], "rewritten": rewritten, "emptied": emptied,
                   "time": stamp}
        atomic_write_bytes(os.path.join(work, JOURNAL), dumps_json(journal))
        _fsync_dir(work)
        hook("journal")
        _roll_forward(ledger, release_dir, journal, hook)
        return ApplyReport(before, after, len(pending), tuple(sorted(present)), _not_found(outcomes),
                           tuple(rewritten), tuple(emptied), recovered, time.perf_counter() - t0)


def _stage_shard(job: tuple) -> tuple[int, frozenset[str], list[dict[str, Any]]]:
    """Read one shard, drop ``gone``, encode every format with the pipeline's writers into the stage folder."""
    release_dir, manifest, shard, gone, stage = job
    num_shards, formats = int(manifest["num_shards"]), list(manifest["formats"])
    keep = [im for im in shards.read_shard(release_dir, manifest, shard) if im.image_id not in gone]
    staged = []
    if keep:
        for rel, data in shards.shard_payloads(shard, num_shards, formats, keep).items():
            atomic_write_bytes(join(stage, rel), data)
            staged.append(_entry(_fmt_of(rel), shard, rel, data, len(keep)))
    return shard, gone, staged


def _map(fn: Callable[[tuple], Any], jobs: list[tuple], workers: int) -> list[Any]:
    """``map`` over shards, in worker processes when there is more than one shard and one worker (GIL-bound
    encoders); results in job order. Workers only stage files: a crash there leaves the release untouched."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(j) for j in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import threading

    # fork is cheap but unsafe with other threads alive (a lock held at fork time stays held in the child)
    fork_ok = "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1
    method = "fork" if fork_ok else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(fn, jobs))


def _shard_of_path(rel: str) -> int:
    stem = rel.rsplit("/", 1)[-1]
    return int(stem.split("-")[1])


def _not_found(outcomes: list[ApplyOutcome]) -> tuple[str, ...]:
    return tuple(sorted({i for o in outcomes for i in o.not_found}))


def _outcome_json(o: ApplyOutcome) -> dict[str, Any]:
    return {"request_id": o.request_id, "removed": [[b.image_id, b.content_sha256, b.sha256] for b in o.removed],
            "already_removed": list(o.already_removed), "not_found": list(o.not_found)}


def _outcome_from_json(d: dict[str, Any]) -> ApplyOutcome:
    return ApplyOutcome(int(d["request_id"]), tuple(RemovedImage(*r) for r in d["removed"]),
                        tuple(d["already_removed"]), tuple(d["not_found"]))


def _roll_forward(ledger: Ledger, release_dir: str, journal: dict[str, Any], hook: Hook) -> None:
    """Step 4; idempotent, so recovery can call it again after a crash anywhere inside it."""
    work = os.path.join(release_dir, WORK_DIR)
    stage = os.path.join(work, STAGE)
    for k, rel in enumerate(journal["moves"]):
        src = join(stage, rel)
        if os.path.exists(src):
            dst = join(release_dir, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(src, dst)
        hook(f"moved:{k}")
    for rel in journal["deletes"]:
        path = join(release_dir, rel)
        if os.path.exists(path):
            os.unlink(path)
        parent = os.path.dirname(path)
        if rel.startswith("images/") and os.path.isdir(parent) and not os.listdir(parent):
            os.rmdir(parent)
    hook("deleted")
    for sub in ("parquet", "coco", "sa1b", "index", "images"):
        _fsync_dir(os.path.join(release_dir, sub))
    staged_manifest = os.path.join(stage, MANIFEST_NAME)
    if os.path.exists(staged_manifest):
        os.replace(staged_manifest, os.path.join(release_dir, MANIFEST_NAME))
        _fsync_dir(release_dir)
    hook("manifest")
    ledger.record_applied(int(journal["release_after"]), [_outcome_from_json(o) for o in journal["outcomes"]],
                          time=_iso_ledger(journal["time"]))
    hook("ledger")
    os.unlink(os.path.join(work, JOURNAL))  # done: from here a leftover stage is only garbage
    _fsync_dir(work)
    shutil.rmtree(work)
    _fsync_dir(release_dir)


def _iso_ledger(stamp: str) -> str:
    return stamp.replace("Z", ".000000Z") if "." not in stamp else stamp


def recover(ledger: Ledger, release_dir: str, *, hook: Hook | None = None) -> bool:
    """Finish (journal present) or discard (no journal) an interrupted apply. Caller holds the lock."""
    work = os.path.join(release_dir, WORK_DIR)
    if not os.path.isdir(work):
        return False
    journal_path = os.path.join(work, JOURNAL)
    if os.path.exists(journal_path):
        journal = json.loads(read_bytes(journal_path))
        log.warning("finishing an interrupted takedown apply (release %s -> %s)", journal["release_before"],
                    journal["release_after"])
        _roll_forward(ledger, release_dir, journal, hook or (lambda _s: None))
    else:
        log.warning("discarding the stage of an interrupted takedown apply (release untouched)")
        shutil.rmtree(work)
    return True
