"""The command-line parts the pipeline owns: its subcommands (``veilset build``, ``veilset eval``) and Beam's share
of the command line. ``veilset.cli`` is the console script; it dispatches to these and to the other rooms'."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from typing import IO, Iterator

# name -> (module with ``add_arguments`` + ``run``, help)
SUBCOMMANDS = {
    "build": ("veilset.pipeline.build_command", "build an anonymized, sharded release from photos (Apache Beam)"),
    "eval": ("veilset.detectors.evaluate", "measure a face or plate detector against COCO ground truth"),
}


def split_beam_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Everything after a bare "--" belongs to Beam (build only): --runner DataflowRunner --project ..."""
    if "--" in argv:
        cut = argv.index("--")
        return argv[:cut], argv[cut + 1 :]
    return argv, []


# Warnings Beam logs on the root logger at import time that say nothing to a veilset user (-v shows them)
_BEAM_NOISE = ("apitools not found",)


def _not_beam_noise(record: logging.LogRecord) -> bool:
    return not (isinstance(record.msg, str) and record.msg.startswith(_BEAM_NOISE))


def quiet_beam_logging() -> None:
    """Beam's INFO and WARNING chatter (type hints, state cache, "Discarding unparseable args") says nothing to a
    user; its errors still show."""
    root = logging.getLogger()
    if _not_beam_noise not in root.filters:
        root.addFilter(_not_beam_noise)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    # worker start-up notices relayed by the in-process job service ("No semi_persistent_directory")
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)


# What a DirectRunner worker process prints on its own stderr before the pipeline's log levels reach it
# (Python's default "LEVEL:logger:message" format): import-time and start-up notices of Beam's loggers.
_WORKER_NOISE = re.compile(rb"^(?:DEBUG|INFO|WARNING):(?:root|__main__|absl|apache_beam(?:\.[\w.]+)?):")


@contextlib.contextmanager
def quiet_workers(enabled: bool = True) -> Iterator[IO[str] | None]:
    """While a build runs, drop the start-up notices that worker processes (which share this process's stderr)
    print before Beam's log levels apply: file descriptor 2 goes through a filter that passes every other line
    (errors, tracebacks, veilset's own lines). Yields a text stream on the real stderr, for a progress bar
    (None when not enabled: everything as it is)."""
    if not enabled:
        yield None
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pass_lines, args=(read_end, saved), name="veilset-stderr", daemon=True)
    pump.start()
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        yield terminal
    finally:
        terminal.flush()
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe ends when the last worker holding it exits
        pump.join(timeout=5)
        terminal.close()
        if not pump.is_alive():
            os.close(saved)


def _pass_lines(read_end: int, out: int) -> None:
    with os.fdopen(read_end, "rb") as pipe:
        for line in pipe:
            if not _WORKER_NOISE.match(line):
                try:
                    os.write(out, line)
                except OSError:
                    return
