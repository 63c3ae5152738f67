"""The command-line parts the pipeline owns: its subcommands (``veilset build``, ``veilset eval``) and Beam's share
of the command line. ``veilset.cli`` is the console script; it dispatches to these and to the other rooms'."""
from __future__ import annotations

import logging

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
    """Beam's INFO chatter (type hints, state cache) drowns the progress lines."""
    root = logging.getLogger()
    if _not_beam_noise not in root.filters:
        root.addFilter(_not_beam_noise)
    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    # worker start-up notices relayed by the in-process job service ("No semi_persistent_directory")
    logging.getLogger("apache_beam.runners.portability.local_job_service").setLevel(logging.ERROR)
