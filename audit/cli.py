"""``veilset audit --release DIR [--ledger L.sqlite] [--report OUT_DIR] [--checks A,B] [--sample N] [--workers N]
[--json] [--face-detector SPEC]``: exit 0 only when every check passes, 1 when there are findings, 2 on a usage error
(an unknown check name, a bad option value)."""
from __future__ import annotations

import argparse
import json
import os
import sys

from veilset.audit.checks import CHECKS
from veilset.audit.parallel import default_workers
from veilset.audit.report import report_dict, summary_text, write_report
from veilset.audit.runner import run_audit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--release", required=True, metavar="DIR", help="release folder (with manifest.json)")
    parser.add_argument("--ledger", default=None, metavar="L.sqlite",
                        help="takedown ledger: its removed IDs/hashes must be absent from the release")
    parser.add_argument("--report", default=None, metavar="OUT_DIR", help="write report.json and report.html here")
    parser.add_argument("--checks", default=None, metavar="A,B",
                        help="run only these checks, comma-separated, in registry order (default: all of "
                             f"{', '.join(CHECKS.names())})")
    parser.add_argument("--sample", type=int, default=None, metavar="N",
                        help="re-detect and scan for residual faces on a deterministic sample of N images "
                             "(default: all)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="worker processes for the per-image work of the anonymization and residual checks "
                             f"(default: one per core, here {default_workers()})")
    parser.add_argument("--json", action="store_true", help="print report.json to stdout instead of a summary")
    parser.add_argument("--face-detector", default=None, metavar="SPEC",
                        help="second face detector for the residual scan (default: retinaface when its weights "
                             "are present, else centerface multi-scale)")


def parse_checks(value: str | None) -> list[str] | None:
    """``--checks a,b`` as a list of registered check names (None: every check); ValueError names a bad one."""
    if value is None:
        return None
    wanted = [c.strip() for c in value.split(",")]
    names = CHECKS.names()
    for name in wanted:
        if name not in names:
            raise ValueError(f"--checks: unknown check {name!r}; choose from {', '.join(names)}")
    return [n for n in names if n in wanted]


def run(args: argparse.Namespace) -> int:
    checks = parse_checks(args.checks)
    if args.sample is not None and args.sample < 1:
        raise ValueError(f"--sample must be >= 1, got {args.sample}")
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    if args.report:
        release, report = os.path.realpath(args.release), os.path.realpath(args.report)
        if report == release or report.startswith(release + os.sep):
            raise ValueError(f"--report {args.report!r} is inside the release {args.release!r}: the audit never "
                             f"writes into what it audits (the report would be an unlisted file)")
    if args.ledger and getattr(args, "ledger_snapshot", None) is None:  # the front door reads it (veilset.api)
        raise ValueError(f"--ledger {args.ledger!r} was not read (veilset.cli reads it: veilset.api.cli_inputs)")
    try:
        report = run_audit(args.release, ledger=getattr(args, "ledger_snapshot", None), sample=args.sample,
                           checks=checks, face_detector=args.face_detector, progress=getattr(args, "progress", None),
                           workers=workers)
    except FileNotFoundError as err:
        raise ValueError(str(err)) from None
    if args.report:
        json_path, html_path = write_report(report, args.report)
        print(f"wrote {json_path} and {html_path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report_dict(report), indent=1, sort_keys=True))
    else:
        print(summary_text(report))
    return 0 if report.passed else 1
