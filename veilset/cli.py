"""``veilset`` console script: one parser, one module per subcommand (``add_arguments`` + ``run``).

Each room owns its subcommands; this front door dispatches, and reads what one room needs from another before
the room runs (``veilset.api.cli_inputs``: the takedown ledger for build and audit, handed down as data). Only
the chosen subcommand's module is imported, so ``veilset takedown status`` need not import Beam.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from veilset import __version__, api, progress
from veilset.pipeline import cli as pipeline_cli

SUBCOMMANDS = {
    **pipeline_cli.SUBCOMMANDS,  # build, eval
    "takedown": ("veilset.takedown.cli", "ingest, apply and answer e-mailed removal requests"),
    "audit": ("veilset.audit.cli", "verify a release end to end and write a compliance report"),
    "detectors": ("veilset.catalog", "list the detectors, mask generators and audit checks, their options, and "
                                     "which can run here"),
}


_PROGRESS_HELP = ("progress: auto (the default) = a live bar (done/total, rate, ETA) when stderr is a terminal, "
                  "else a log line every {every:.0f} s; bar, log or none force one")
WITH_PROGRESS = {
    "build": _PROGRESS_HELP.format(every=progress.LOG_EVERY) + " (local outputs on the DirectRunner only: a "
             "remote runner or output shows the end-of-run summary alone)",
    "audit": _PROGRESS_HELP.format(every=progress.LOG_EVERY) + " (over images x checks)",
}


def make_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (``veilset takedown status`` need not import Beam)."""
    parser = argparse.ArgumentParser(prog="veilset", description="Privacy-preserving image-dataset curation.")
    parser.add_argument("--version", action="version", version=f"veilset {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, Beam's own warnings and worker notices included (default: off)")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback after the one-line message (default: off)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
            if name in WITH_PROGRESS:
                p.add_argument("--progress", choices=progress.MODES, default="auto",
                               help=WITH_PROGRESS[name])
    return parser


def _command_in(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, beam_args = pipeline_cli.split_beam_args(argv)
    parser = make_parser(_command_in(argv))
    args = parser.parse_args(argv)
    args.beam_args = beam_args
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        pipeline_cli.quiet_beam_logging()
    if getattr(args, "progress", None) is not None:  # handed down as data: the rooms never import veilset.progress
        args.progress = progress.factory(args.progress)
    try:
        api.cli_inputs(args)
        return int(args._run(args) or 0)
    except ValueError as err:  # a user mistake: the message names the bad value and the fix
        if args.debug:
            import traceback

            traceback.print_exc()
        print(f"veilset {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    raise SystemExit(main())
