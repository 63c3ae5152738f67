"""Storage: local paths and Beam ``FileSystems`` (gs://, s3://, ...) behind one small module.

Every read, write, listing and deletion of release files (and of build inputs) goes through here, so the test
"is this path remote?" is made in one place. Local paths use the OS directly (``os.replace`` makes a write
atomic); remote paths go through Beam's ``FileSystems`` (create + rename, atomic per object on their backends).
Beam is imported only when a remote path (or ``open_read``) needs it: takedown and audit, which work on local
folders, start without it.
"""
from __future__ import annotations

import os
import uuid
from typing import IO, Any

TMP_MARK = ".tmp-"  # every temporary file name holds it (stale ones are found and removed by it)
FAULT_AT = "VEILSET_FAULT_AT"  # crash tests: the N-th change to a file kills this process (like kill -9)
FAULT_LOG = "VEILSET_FAULT_LOG"  # crash tests: append one line per change point (what a test may kill at)
_changes = 0


def fault_point(what: str, path: str) -> None:
    """Fault injection, off unless a crash test sets ``VEILSET_FAULT_AT`` / ``VEILSET_FAULT_LOG``: every change a
    writer makes to a file (before a write, between a write and its rename, before a rename or a deletion) is a
    point; at the N-th this process dies at once (``os._exit(137)``: no cleanup, no flush, as under kill -9)."""
    global _changes
    at, log = os.environ.get(FAULT_AT), os.environ.get(FAULT_LOG)
    if not at and not log:
        return
    _changes += 1
    if log:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {_changes} {what} {path}\n")
    if at and _changes == int(at):
        os._exit(137)


def is_remote(path: str) -> bool:
    """A Beam filesystem URL (``scheme://...``) rather than a local path."""
    return "://" in path


def _beam() -> Any:
    from apache_beam.io.filesystems import FileSystems  # heavy (seconds): only for remote paths

    return FileSystems


def join(root: str, rel: str) -> str:
    """``rel`` ('/'-separated, relative to ``root``) as a path under ``root``."""
    if is_remote(root):
        return _beam().join(root, rel)
    return os.path.join(root, *rel.split("/"))


def exists(path: str) -> bool:
    return _beam().exists(path) if is_remote(path) else os.path.exists(path)


def open_read(path: str) -> IO[bytes]:
    """A binary stream of any path, local or remote, never decompressed by its suffix."""
    return _beam().open(path, compression_type="uncompressed")


def read(path: str) -> bytes:
    """All bytes of a file; ``FileNotFoundError`` (local) or Beam's error (remote) when it is missing."""
    if is_remote(path):
        with _beam().open(path) as fh:
            return fh.read()
    with open(path, "rb") as fh:
        return fh.read()


def temp_name(path: str) -> str:
    """A unique temporary name next to ``path`` (same folder, so a rename is atomic)."""
    head, tail = path.rsplit("/", 1) if "/" in path else ("", path)
    name = f".{tail}{TMP_MARK}{uuid.uuid4().hex}"
    return f"{head}/{name}" if head else name


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either absent/old or complete, never partial."""
    if is_remote(path):
        fs, tmp = _beam(), temp_name(path)
        with fs.create(tmp) as fh:
            fh.write(data)
        if fs.exists(path):
            fs.delete([path])
        fs.rename([tmp], [path])
        return
    fault_point("write", path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        fault_point("rename-temp", path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def move(src: str, dst: str) -> None:
    """Rename ``src`` over ``dst`` (atomic on one local filesystem), creating ``dst``'s folder."""
    if is_remote(src) or is_remote(dst):
        fs = _beam()
        if fs.exists(dst):
            fs.delete([dst])
        fs.rename([src], [dst])
        return
    fault_point("move", dst)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    os.replace(src, dst)


def remove(path: str) -> None:
    """Delete one file; a missing file is fine (idempotent reruns)."""
    if is_remote(path):
        fs = _beam()
        if fs.exists(path):
            fs.delete([path])
    elif os.path.exists(path):
        fault_point("remove", path)
        os.unlink(path)


def remove_empty_dir(path: str) -> None:
    """Remove a local folder when it is empty (object stores have no folders: nothing to do)."""
    if not is_remote(path) and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)


def list_files(folder: str) -> list[str]:
    """Names of the files directly inside ``folder``, sorted ([] when it does not exist)."""
    if is_remote(folder):
        result = _beam().match([folder.rstrip("/") + "/*"])[0]
        return sorted(m.path.rsplit("/", 1)[-1] for m in result.metadata_list)
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if os.path.isfile(os.path.join(folder, f)))


def match(patterns: list[str]) -> list[str]:
    """Every remote path matching any of the Beam glob ``patterns`` (sorted, de-duplicated)."""
    found: set[str] = set()
    for result in _beam().match(patterns):
        found.update(m.path for m in result.metadata_list)
    return sorted(found)


def fsync_dir(path: str) -> None:
    """Make a local folder's entries (renames, deletions) durable; best effort, a no-op for remote paths."""
    if is_remote(path):
        return
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
