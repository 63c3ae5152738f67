"""The front door's Python API: ``build`` and ``audit``, composed from the rooms.

The rooms never import each other sideways (``tests/test_house.py`` checks the layers): what one needs from
another is read here and handed down as data. Today that is the takedown ledger: ``build`` gets its blocklist
(``veilset.pipeline.options.Blocklist``), ``audit`` its blocklist and history
(``veilset.audit.takedowns.LedgerSnapshot``). The CLI (``veilset.cli``) does the same through ``cli_inputs``.

Rooms are imported inside the functions, so ``import veilset.api`` (and ``veilset takedown ...``) stays cheap.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Sequence


def _open_ledger(path: str, missing: str) -> Any:
    """The takedown ledger at ``path``; a missing file is ``missing`` (opening would create an empty ledger)."""
    if not os.path.isfile(path):
        raise ValueError(missing)
    from veilset.takedown.ledger import Ledger

    return Ledger(path)


def build_blocklist(ledger_path: str | None) -> Any:
    """``veilset.pipeline.options.Blocklist`` of the ledger (empty without one)."""
    from veilset.pipeline.options import Blocklist

    if ledger_path is None:
        return Blocklist()
    ledger = _open_ledger(ledger_path, f"--ledger {ledger_path!r} does not exist (a typo would silently skip the "
                                       f"blocklist)")
    return Blocklist(frozenset(ledger.blocked_image_ids()), frozenset(ledger.blocked_content_hashes()))


def ledger_snapshot(ledger_path: str) -> Any:
    """``veilset.audit.takedowns.LedgerSnapshot`` of the ledger: removed IDs and hashes, history."""
    from veilset.audit.takedowns import LedgerSnapshot

    ledger = _open_ledger(ledger_path, f"--ledger: no ledger file at {ledger_path!r}")
    return LedgerSnapshot(frozenset(ledger.blocked_image_ids()), frozenset(ledger.blocked_content_hashes()),
                          tuple(ledger.history()))


def build(opts: Any, beam_args: list[str] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run ``veilset build`` with ``opts`` (``veilset.pipeline.options.BuildOptions``); returns the manifest."""
    from veilset.pipeline.build_command import build as run_build

    return run_build(opts, beam_args, verbose, blocklist=build_blocklist(opts.ledger))


def audit(release_dir: str, *, ledger: str | None = None, sample: int | None = None,
          face_detector: str | None = None, checks: Sequence[str] | None = None, **prebuilt: Any) -> Any:
    """Run ``veilset audit`` on ``release_dir`` (``ledger``: a path); returns the ``AuditReport``. ``prebuilt``:
    ``residual=``/``production=`` detectors to reuse (``veilset.audit.runner.run_audit``)."""
    from veilset.audit.runner import run_audit

    snapshot = ledger_snapshot(ledger) if ledger else None
    return run_audit(release_dir, ledger=snapshot, sample=sample, face_detector=face_detector, checks=checks,
                     **prebuilt)


def cli_inputs(args: argparse.Namespace) -> None:
    """The cross-room inputs of the chosen command, set on ``args`` before the room's ``run(args)``."""
    if args.command == "build":
        args.blocklist = build_blocklist(args.ledger)
    elif args.command == "audit":
        args.ledger_snapshot = ledger_snapshot(args.ledger) if args.ledger else None
