"""One writer at a time: an exclusive lock on a local release folder, held by ``build`` and ``takedown apply``.

The lock is a non-blocking ``flock`` on the folder itself: the kernel drops it when its holder exits or is
killed, so a lock can never be left stale. Who holds it is written to ``DIR/.veilset-lock.json`` (pid, host,
start time, command) so that a second writer's error names the holder; a holder file whose process is gone (pid
not alive on this host) is stale and is taken over (rewritten) by the next writer. Object stores (gs://, s3://)
have no locks: there the operator keeps to one writer.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from datetime import datetime, timezone
from typing import Any

from veilset.release import layout, storage

LOG = logging.getLogger("veilset.lock")


class ReleaseLocked(RuntimeError):
    """Another process is writing the release folder."""


def holder(release_dir: str) -> dict[str, Any] | None:
    """The recorded holder (pid, host, started, command), or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(release_dir, layout.LOCK_NAME), "rb") as fh:
            found = json.loads(fh.read())
        return found if isinstance(found, dict) else None
    except (OSError, ValueError):
        return None


def pid_alive(pid: Any, host: Any) -> bool:
    """Whether ``pid`` on ``host`` may still run (another host's process cannot be checked: assumed alive)."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def describe(found: dict[str, Any] | None) -> str:
    if not found:
        return "another veilset process"
    return (f"{found.get('command', 'veilset')} (pid {found.get('pid')} on {found.get('host')}, "
            f"since {found.get('started')})")


class ReleaseLock:
    """``with ReleaseLock(dir, command="build"):`` -- exclusive; raises ``ReleaseLocked`` after ``wait_s``."""

    def __init__(self, release_dir: str, *, wait_s: float = 0.0, command: str = "veilset") -> None:
        self.release_dir, self.wait_s, self.command = release_dir, wait_s, command
        self.fd: int | None = None

    def __enter__(self) -> "ReleaseLock":
        self.fd = os.open(self.release_dir, os.O_RDONLY)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise ReleaseLocked(f"{self.release_dir!r} is being written by {describe(holder(self.release_dir))}"
                                        f": one writer at a time, try again when it has finished") from None
                time.sleep(0.05)
        self._take_over()
        return self

    def _take_over(self) -> None:
        stale = holder(self.release_dir)
        if stale is not None:
            LOG.warning("taking over the lock of %s: %s", describe(stale),
                        "not running" if not pid_alive(stale.get("pid"), stale.get("host")) else "lock released")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        storage.atomic_write(os.path.join(self.release_dir, layout.LOCK_NAME), json.dumps(me).encode())

    def __exit__(self, *exc: object) -> None:
        if self.fd is None:
            return
        found = holder(self.release_dir)
        if found is not None and found.get("pid") == os.getpid():
            storage.remove(os.path.join(self.release_dir, layout.LOCK_NAME))
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
