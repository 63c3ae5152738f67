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
    return Blocklist(frozenset(ledger.blocked_image_ids()), frozenset(ledger.blocked_content_hashes()),
                     ledger.blocked_fingerprints(), frozenset(ledger.blocked_pixel_hashes()),
                     ledger.blocked_windows())


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


# ------------------------------------------------------------------------------------- the public Python API
# ``veilset.build``, ``veilset.Release``, ``veilset.takedown_*`` and ``veilset.audit`` (``veilset/__init__.py``
# resolves them lazily from here): the CLI's commands as functions, with the CLI's option names.


def build_release(inputs: str | Sequence[str], output: str, *, ledger: str | None = None,
                  beam_args: Sequence[str] = (), verbose: bool = False, **options: Any) -> dict[str, Any]:
    """``veilset build INPUTS --output OUTPUT [--OPTION VALUE ...] [-- BEAM_ARGS]`` as a call.

    ``options`` are ``veilset.pipeline.options.BuildOptions`` fields (the CLI options with ``_``: ``workers``,
    ``shards``, ``formats``, ``face_detector``, ``plate_detector``, ``masks``, ``margin``, ...); a bad one raises
    ``ValueError`` naming it before anything is written. Returns ``{"release", "counts", "output",
    "manifest", "shards", "rejects"}`` (paths absolute).
    """
    from veilset.pipeline.cli import quiet_beam_logging
    from veilset.pipeline.options import BuildOptions

    if not verbose:
        quiet_beam_logging()
    inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    if "formats" in options and isinstance(options["formats"], str):
        options["formats"] = tuple(f.strip() for f in options["formats"].split(",") if f.strip())
    opts = BuildOptions(inputs=inputs, output=output, ledger=ledger, **options)
    manifest = build(opts, list(beam_args), verbose)
    join = lambda rel: os.path.join(os.path.abspath(output), rel)  # noqa: E731
    return {"release": manifest["release"], "counts": dict(manifest["counts"]), "output": os.path.abspath(output),
            "manifest": join("manifest.json"), "shards": [join(s["path"]) for s in manifest["shards"]],
            "rejects": join(manifest["rejects"])}


class Release:
    """A release folder, read: ``version``, ``counts``, ``records()``, ``image(id)``, ``to_pandas()``,
    ``to_hf_dataset()``. Reads the Parquet shards (``--formats`` must include parquet, the default)."""

    def __init__(self, path: str) -> None:
        from veilset.release import manifest

        if not os.path.isdir(path):
            raise ValueError(f"Release({path!r}): no such folder")
        self.path = path
        self.manifest = manifest.read(path)

    def __repr__(self) -> str:
        return f"Release({self.path!r}, version={self.version}, published={self.counts['published']})"

    @property
    def version(self) -> int:
        """The release number (1 after a build, +1 per applied takedown)."""
        return self.manifest.release

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest.counts.to_dict())

    def parquet_files(self) -> list[str]:
        files = [os.path.join(self.path, f.path) for f in self.manifest.shards if f.format == "parquet"]
        if not files and self.counts["published"]:
            raise ValueError(f"{self.path!r} has no Parquet shards (formats {', '.join(self.manifest.formats)}); "
                             f"build with --formats parquet,...")
        return files

    def records(self) -> Any:
        """One dict per published image (the Parquet row without the JPEG bytes), sorted by image ID."""
        import pyarrow.parquet as pq

        for f in self.parquet_files():
            table = pq.read_table(f)
            for row in table.drop_columns(["image"]).to_pylist():
                yield row

    def image(self, image_id: str) -> bytes:
        """The published JPEG bytes of ``image_id``; ``KeyError`` when the release does not hold it."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        for f in self.parquet_files():
            table = pq.read_table(f, columns=["image_id", "image"])
            hit = table.filter(pc.equal(table["image_id"], image_id))
            if hit.num_rows:
                return hit["image"][0].as_py()["bytes"]
        raise KeyError(f"{image_id!r} is not in release {self.version} at {self.path!r}")

    def to_pandas(self) -> Any:
        pd = _reader("pandas")

        frames = [__import__("pyarrow.parquet").parquet.read_table(f).to_pandas() for f in self.parquet_files()]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def to_hf_dataset(self) -> Any:
        """A Hugging Face ``datasets.Dataset`` with an ``Image`` column."""
        datasets = _reader("datasets")

        return datasets.load_dataset("parquet", data_files=self.parquet_files(), split="train")


def _reader(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed: pip install 'veilset[readers]' (pandas, datasets)") from None


def takedown_ingest(ledger: str, *, maildir: str | None = None, mbox: str | None = None, eml: str | None = None,
                    release: str | None = None) -> dict[str, Any]:
    """``veilset takedown ingest`` on one local mail source; returns the summary the CLI prints."""
    from veilset.takedown import cli as takedown_cli

    args = argparse.Namespace(ledger=ledger, maildir=maildir, mbox=mbox, eml=eml, imap=None, release=release,
                              imap_password_env=None, max_message_bytes=None, max_ids=None, max_parts=None,
                              max_mime_depth=None, require_dkim=None, abuse_ids_per_day=None, id_pattern=None)
    if sum(x is not None for x in (maildir, mbox, eml)) != 1:
        raise ValueError("takedown_ingest: give exactly one of maildir=, mbox=, eml=")
    takedown_cli._check_mail_source(args)
    from veilset.takedown import intake
    from veilset.takedown.ledger import Ledger

    policy = takedown_cli._policy(args)
    with Ledger(ledger) as led:
        known = intake.load_release_ids(release) if release else None
        return takedown_cli._ingest_once(args, led, policy, known)


def takedown_apply(ledger: str, release: str, **options: Any) -> dict[str, Any]:
    """``veilset takedown apply``: removes the received requests' images; returns the report as a dict."""
    from veilset.takedown.apply import apply_pending
    from veilset.takedown.ledger import Ledger

    if not os.path.isfile(ledger):
        raise ValueError(f"ledger {ledger!r} does not exist")
    with Ledger(ledger) as led:
        return apply_pending(led, release, **options).to_dict()


def takedown_status(ledger: str) -> dict[str, int]:
    """Requests per state (``veilset takedown status``)."""
    from veilset.takedown.ledger import Ledger

    if not os.path.isfile(ledger):
        raise ValueError(f"ledger {ledger!r} does not exist")
    with Ledger(ledger) as led:
        return led.counts()
