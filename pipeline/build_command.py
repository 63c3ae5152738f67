"""``veilset build``: options -> validated ``BuildOptions`` -> Beam pipeline -> summary.

Everything after a bare ``--`` is passed to Beam unchanged (``-- --runner DataflowRunner --project P ...``).
Without ``--runner`` the DirectRunner is used, in multi_processing mode with ``--workers`` processes.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from veilset.detectors.base import FACE, LICENSE_PLATE
from veilset.detectors.registry import names_for, threads_per_worker
from veilset.pipeline import options as opt
from veilset.pipeline.anonymize import METHODS
from veilset.release.manifest import NEAR_DUPLICATE_MODES
from veilset.release import canonical, ids, layout, registry, storage
from veilset.segmentation.registry import MASKS

if TYPE_CHECKING:
    from veilset.pipeline.ingest import InputFile

LOG = logging.getLogger("veilset.build")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="PATH_OR_GLOB",
                   help="image files, folders (recursive) or globs; local or any Beam filesystem (gs://...)")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = BEAM_EPILOG
    p.add_argument("--output", "-o", required=True,
                   help="release folder (required; created; a rerun replaces the release)")
    p.add_argument("--workers", type=int, default=None,
                   help=f"DirectRunner worker processes (default: CPU count, here {os.cpu_count()})")
    p.add_argument("--shards", type=int, default=None,
                   help=f"number of shards (default: ceil(inputs / {opt.IMAGES_PER_SHARD}))")
    p.add_argument("--formats", default=None,
                   help=f"comma-separated shard formats: {', '.join(registry.selectable())} "
                        f"(default: {','.join(opt.DEFAULT_FORMATS)})")
    faces, plates, masks = ", ".join(names_for(FACE)), ", ".join(names_for(LICENSE_PLATE)), ", ".join(MASKS.names())
    p.add_argument("--face-detector", default=None, metavar="NAME[:ARGS]",
                   help=f"face detector: {faces} (default: {opt.DEFAULT_FACE_DETECTOR}; 'none' disables, with a "
                        f"warning; `veilset detectors` lists their ARGS)")
    p.add_argument("--plate-detector", default=None, metavar="NAME[:ARGS]",
                   help=f"licence-plate detector: {plates} (default: {opt.DEFAULT_PLATE_DETECTOR}; 'none' disables)")
    p.add_argument("--masks", default=None, metavar="NAME[:ARGS]|none",
                   help=f"automatic mask generator: {masks} (default: {opt.DEFAULT_MASKS}; e.g. "
                        f"sam:vit_b:/path/sam.pth)")
    p.add_argument("--device", default=None, help="device for torch models (cpu, cuda; default: cuda when present)")
    p.add_argument("--max-short-side", type=int, default=None,
                   help="cap the shortest side of published images (default 1500 as SA-1B; 0 disables)")
    p.add_argument("--anonymize", dest="anonymize_method", choices=METHODS, default=None,
                   help="anonymization method (default: pixelate = pixelation + blur + noise)")
    p.add_argument("--margin", type=float, default=None,
                   help=f"box enlargement before anonymizing, a fraction in [0, 2] (default: {opt.DEFAULT_MARGIN})")
    p.add_argument("--jpeg-quality", type=int, default=None,
                   help=f"published JPEG quality, 1..100 (default: {opt.DEFAULT_QUALITY})")
    p.add_argument("--exact-decode", dest="draft_decode", action="store_false", default=None,
                   help="decode large JPEGs at full size before downscaling (default: libjpeg draft mode, "
                        "about 2.5x faster for photos >= 2x the size cap; pixels differ by < 1 grey level)")
    p.add_argument("--ledger", default=None,
                   help="takedown ledger (SQLite): never publish what it removed (default: none)")
    p.add_argument("--follow-symlinks", dest="follow_symlinks", action="store_true", default=None,
                   help="follow symbolic links that lead out of the input folders (default: such links are rejects)")
    p.add_argument("--near-duplicates", dest="near_duplicates", default=None, choices=NEAR_DUPLICATE_MODES,
                   help="inputs that are near-copies of one photo (re-encoded, resized, turned, framed): publish-one "
                        "publishes the largest and counts the rest as duplicates (default); publish-all publishes "
                        "every copy, each naming the image it copies in near_duplicate_of")


BEAM_EPILOG = """\
Beam options: everything after a bare `--` goes to Apache Beam unchanged (default: the DirectRunner,
multi_processing with --workers processes), e.g.
  veilset build photos/ --output release/ -- --runner DataflowRunner --project P --region R \\
      --temp_location gs://B/tmp
Global options (before `build`): -v shows Beam's own warnings, --debug prints tracebacks on errors."""


def options_from_args(args: argparse.Namespace) -> opt.BuildOptions:
    kwargs: dict[str, Any] = {"inputs": tuple(args.inputs), "output": args.output}
    for name in ("workers", "shards", "face_detector", "plate_detector", "masks", "device", "anonymize_method",
                 "margin", "jpeg_quality", "ledger", "draft_decode", "follow_symlinks", "near_duplicates"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.formats is not None:
        kwargs["formats"] = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    if args.max_short_side is not None:
        kwargs["max_short_side"] = args.max_short_side or None
    return opt.BuildOptions(**kwargs)


QUIET_WORKERS = '--sdk_harness_log_level_overrides={"apache_beam": "ERROR", "__main__": "ERROR"}'


def beam_options(opts: opt.BuildOptions, beam_args: list[str], verbose: bool = False):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    if not verbose and not any(a.startswith("--sdk_harness_log_level_overrides") for a in args):
        args.append(QUIET_WORKERS)  # Beam's own INFO and WARNING chatter in the workers says nothing to a user
    if not any(a == "--runner" or a.startswith("--runner=") for a in args):
        args.append("--runner=DirectRunner")
        if opts.workers > 1:
            args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={opts.workers}"]
        else:
            args += ["--direct_running_mode=in_memory"]
    return PipelineOptions(args)


def model_identities(opts: opt.BuildOptions) -> dict[str, Any]:
    """Build every model once in the driver: validates the specs up front and records what will run."""
    from veilset.detectors.registry import build_detector

    models: dict[str, Any] = {}
    for key, spec in (("face_detector", opts.face_detector), ("plate_detector", opts.plate_detector)):
        detector = build_detector(spec)
        models[key] = None if detector is None else dict(detector.identity(), spec=spec)
    generator = None
    if opts.masks != "none":
        from veilset.segmentation.registry import build_mask_generator

        generator = build_mask_generator(opts.masks)
    models["masks"] = None if generator is None else dict(generator.identity(), spec=opts.masks)
    return models


def build(opts: opt.BuildOptions, beam_args: list[str] | None = None, verbose: bool = False,
          blocklist: opt.Blocklist | None = None, progress: Any = None, stream: Any = None) -> dict[str, Any]:
    """Run a build; returns the manifest. ``blocklist``: what the ledger ``opts.ledger`` removed (required when
    ``opts.ledger`` is set; ``veilset.api.build`` reads it). ``progress``: a reporter factory
    (``veilset.progress.factory``: ``progress(total, unit, stream)``; None: no progress), used for a local
    output on the DirectRunner only; ``stream``: where a bar goes (default stderr)."""
    from veilset.pipeline.ingest import list_inputs
    from veilset.release.housekeeping import check_output_dir
    from veilset.release.manifest import load_manifest

    if opts.ledger is not None and blocklist is None:
        raise ValueError(f"--ledger {opts.ledger!r}: the ledger is read by the front door and passed as blocklist= "
                         f"(veilset.api.build does both)")
    blocklist = blocklist if blocklist is not None else opt.Blocklist()
    check_output_dir(opts.output)
    listing = list_inputs(opts.inputs, exclude_under=opts.output, follow_symlinks=opts.follow_symlinks)
    inputs = list(listing.files)
    num_shards = opts.num_shards(len(inputs))
    if opts.face_detector == "none":
        LOG.warning("face detection is DISABLED (--face-detector none): faces in these images will be published")
    models = model_identities(opts)  # every spec validated (weights, checkpoints) before the folder is claimed
    with writer_lock(opts.output):
        LOG.info("building %d input files (%d refused at listing) -> %s (%d shards, formats %s, %d workers)",
                 len(inputs), len(listing.rejects), opts.output, num_shards, ",".join(opts.formats), opts.workers)
        local = not any(a == "--runner" or a.startswith("--runner=") for a in (beam_args or []))
        # DirectRunner: --workers processes share this machine's cores; give each detector its share of threads
        # (2 workers x 2 onnxruntime threads on 2 cores made 2 workers slower than 1).
        detector_threads = threads_per_worker(opts.workers) if local else None
        reporter = None  # counted through files under the output: a local output and local workers only
        if progress is not None and local and not storage.is_remote(opts.output):
            reporter = progress(len(inputs) + len(listing.rejects), "images", stream)
        run_graph(opts, beam_options(opts, beam_args or [], verbose), inputs, num_shards=num_shards, models=models,
                  blocked_ids=blocklist.image_ids, blocked_hashes=blocklist.content_hashes,
                  blocked_pdq=blocklist.pdq, blocked_pixels=blocklist.pixel_hashes, blocked_windows=blocklist.windows,
                  detector_threads=detector_threads, listing_rejects=listing.rejects, reporter=reporter)
    return load_manifest(opts.output)


@contextlib.contextmanager
def writer_lock(output: str) -> Iterator[None]:
    """The output folder for this build alone: created (local), locked (one writer at a time), checked again
    under the lock and marked as a veilset release before anything is written into it."""
    from veilset.release import housekeeping, storage
    from veilset.release.lock import ReleaseLock

    if storage.is_remote(output):
        yield
        return
    os.makedirs(output, exist_ok=True)
    with ReleaseLock(output, command="build"):
        housekeeping.check_output_dir(output)
        housekeeping.mark(output)
        yield


def run_graph(opts: opt.BuildOptions, options: Any, inputs: list[InputFile], reporter: Any = None,
              **kwargs: Any) -> None:
    """Run the pipeline (the next release of the one in the folder, if any), then (its manifest committed) remove
    the files of the release it replaced. ``reporter``: shown every finished input while the pipeline runs
    (counted under the output's progress folder, removed when the pipeline ends)."""
    import apache_beam as beam

    from veilset.pipeline.graph import build_graph
    from veilset.pipeline.progress import FolderProgress, progress_dir
    from veilset.release import housekeeping, manifest

    before = housekeeping.release_files(opts.output)
    previous = housekeeping.current_release(opts.output)
    journal = BuildJournal.start(opts, previous, inputs, **kwargs)
    if journal.committed:
        LOG.warning("an interrupted run of this same build had committed release %d: finishing its clean-up",
                    journal.generation)
    else:
        folder = progress_dir(opts.output) if reporter is not None else None
        watcher = FolderProgress(folder, reporter) if folder is not None else None
        try:
            with beam.Pipeline(options=options) as p:
                build_graph(p, opts, inputs, previous=previous, generation=journal.generation,
                            resume_key=journal.resume_key, progress_dir=folder, **kwargs)
        finally:
            if watcher is not None:
                watcher.close()
    housekeeping.remove_superseded(opts.output, before, manifest.read(opts.output))


@dataclass(frozen=True)
class BuildJournal:
    """``.staging/build.json``, written before anything else: the generation this build writes its files under
    (the next release's number: nothing of the current release is overwritten), the key of its staged records
    (a rerun with the same options and models reuses them: resume) and a digest of what it builds (inputs and
    blocklist). Removed last, after the clean-up: when a rerun of the same build finds it and the release it
    names already committed, only the clean-up was left (``committed``)."""

    generation: int
    resume_key: str
    work: str
    committed: bool = False

    @classmethod
    def start(cls, opts: opt.BuildOptions, previous: Any, inputs: list[InputFile], *, models: dict[str, Any],
              blocked_ids: frozenset[str] = frozenset(), blocked_hashes: frozenset[str] = frozenset(),
              blocked_pdq: tuple[tuple[str, str], ...] = (), blocked_pixels: frozenset[str] = frozenset(),
              blocked_windows: tuple[tuple[str, bytes], ...] = (),
              listing_rejects: tuple[Any, ...] = (), **_: Any) -> "BuildJournal":
        pending = storage.join(opts.output, layout.TAKEDOWN_JOURNAL)
        if storage.exists(pending):
            raise ValueError(f"--output {opts.output!r}: an interrupted takedown apply is pending ({pending}); "
                             f"finish it first with `veilset takedown apply --release {opts.output} --ledger ...`")
        config = {k: v for k, v in opts.to_config().items() if k != "workers"}
        key = ids.sha256_hex(canonical.dumps_json({"config": config, "models": models}))[:16]
        listed = sorted(f.source for f in inputs) + sorted(r.source for r in listing_rejects)
        blocked = (blocked_ids | blocked_hashes | blocked_pixels | {h for _, h in blocked_pdq}
                   | {ids.sha256_hex(w) for _, w in blocked_windows})
        work = ids.sha256_hex(canonical.dumps_json({"key": key, "inputs": listed, "blocked": sorted(blocked)}))[:16]
        path = storage.join(opts.output, layout.BUILD_JOURNAL)
        release = previous.release if previous is not None else 0
        found = cls.read(path)
        if found is not None and found.work == work and found.generation == release:
            return cls(release, key, work, committed=True)
        journal = cls(release + 1, key, work)
        storage.atomic_write(path, canonical.dumps_json({"generation": journal.generation, "resume_key": key,
                                                         "work": work}))
        return journal

    @classmethod
    def read(cls, path: str) -> "BuildJournal | None":
        try:
            d = json.loads(storage.read(path))
            return cls(int(d["generation"]), str(d["resume_key"]), str(d["work"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


def format_summary(manifest: dict[str, Any], output: str, seconds: float) -> str:
    c = manifest["counts"]
    lines = [
        f"veilset build: release {manifest['release']} in {output}",
        f"  input {c['input']}  published {c['published']}  rejected {c['rejected']}  "
        f"duplicates {c['duplicates']}  blocked {c['blocked']}",
    ]
    for reason, n in manifest["rejects_by_reason"].items():
        lines.append(f"    rejected {reason}: {n}")
    for reason, n in manifest.get("duplicates_by_reason", {}).items():
        lines.append(f"    duplicates {reason}: {n}")
    for reason, n in manifest.get("blocked_by_reason", {}).items():
        lines.append(f"    blocked {reason}: {n}")
    if manifest.get("near_duplicates_published"):
        lines.append(f"    published near-copies (near_duplicate_of): {manifest['near_duplicates_published']}")
    faces = manifest["models"].get("face_detector")
    lines.append(f"  time {seconds:.1f} s, {c['published'] / max(seconds, 1e-9):.2f} images/s")
    lines.append(f"  shards: {len(manifest['shards'])} files ({', '.join(manifest['formats'])}) + "
                 f"{len(manifest['index'])} index files; rejects: {manifest['rejects']}; manifest: manifest.json")
    lines.append(f"  face detector: {faces['name'] if faces else 'NONE (faces not anonymized)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``args.blocklist``: the ledger's, read by the front door (``veilset.cli``) when --ledger is given."""
    from veilset.pipeline.cli import quiet_workers
    from veilset.release.lock import ReleaseLocked

    opts = options_from_args(args)
    t0 = time.monotonic()
    try:
        with quiet_workers(enabled=not args.verbose) as terminal:
            manifest = build(opts, args.beam_args, args.verbose, getattr(args, "blocklist", None),
                             progress=getattr(args, "progress", None), stream=terminal)
    except ReleaseLocked as err:
        print(f"veilset build: error: {err}", file=sys.stderr)
        return 3
    print(format_summary(manifest, opts.output, time.monotonic() - t0))
    sys.stdout.flush()
    return 0

