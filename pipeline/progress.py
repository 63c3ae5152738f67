"""Counting finished inputs across Beam's worker processes, through the filesystem (no Beam import here).

The DirectRunner's ``--workers`` are separate processes: each ``graph.CountFinished`` instance keeps its own
count of finished inputs (published, rejected, duplicate or blocked: every input once) and rewrites one small
file ``OUTPUT/.staging/progress/<32 hex>.count`` with it (atomically, at most twice a second and at the end of
each bundle). The driver's ``FolderProgress`` polls that folder in a thread, sums the files and feeds a reporter
(``veilset.progress``: a bar or log lines), then removes the folder: a build leaves no progress files behind.
Local outputs only: a remote runner or output gets no progress, just the end-of-run summary.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from typing import Any

from veilset.release import layout
from veilset.release.housekeeping import OWN_PROGRESS

WRITE_EVERY = 0.5  # seconds between two rewrites of one counter file
POLL_EVERY = 0.5  # seconds between two polls by the driver


def progress_dir(output: str) -> str:
    return os.path.join(output, *layout.PROGRESS_DIR.split("/"))


class Counter:
    """Worker side: one counter file per instance (``new`` names it), rewritten atomically."""

    def __init__(self, folder: str, clock: Any = time.monotonic) -> None:
        self.folder, self._clock = folder, clock
        self.path = os.path.join(folder, uuid.uuid4().hex + layout.PROGRESS_SUFFIX)
        self.count, self._written, self._last = 0, -1, clock()

    def add(self, n: int = 1) -> None:
        self.count += n
        if self._clock() - self._last >= WRITE_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.count == self._written:
            return
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"  # OWN_PROGRESS: housekeeping knows both names
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(str(self.count))
            os.replace(tmp, self.path)
        except OSError:  # progress is for show: it never fails a build (housekeeping removes a stray tmp)
            pass
        self._written, self._last = self.count, self._clock()


def read_total(folder: str) -> int:
    """The sum of every counter file in ``folder`` (0 when there is none yet)."""
    total = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        if OWN_PROGRESS.match(name) and not name.endswith(".tmp"):
            try:
                with open(os.path.join(folder, name), encoding="ascii") as fh:
                    total += int(fh.read() or 0)
            except (OSError, ValueError):  # replaced while read: the next poll sees it
                continue
    return total


def remove_counters(folder: str) -> None:
    """Remove the counter files (and their temporaries) and the folder when that leaves it empty."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if OWN_PROGRESS.match(name):
            os.unlink(os.path.join(folder, name))
    if not os.listdir(folder):
        os.rmdir(folder)


class FolderProgress:
    """Driver side: a thread polls ``folder`` and updates ``reporter`` until ``close`` (which shows the final
    count and removes the counter files)."""

    def __init__(self, folder: str, reporter: Any, every: float = POLL_EVERY) -> None:
        self.folder, self.reporter, self._every = folder, reporter, every
        os.makedirs(folder, exist_ok=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="veilset-progress", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._every):
            self.reporter.update(read_total(self.folder))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.reporter.update(read_total(self.folder))
            self.reporter.close()
        finally:
            remove_counters(self.folder)
