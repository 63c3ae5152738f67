"""The Beam graph of ``veilset build``: one readable chain, a CamelCase label per step.

    ListInputs -> ReadAndHash -> DropBlocked -> KeyById -> GroupById -> Deduplicate -> Resume -> Decode
      -> DetectFaces (RunInference) -> DetectPlates (RunInference) -> Anonymize -> GenerateMasks (RunInference)
      -> EncodeAndStage -> KeyByPixels -> GroupByPixels -> DeduplicatePixels -> NearKeys -> CollectNearKeys
      -> GroupNearDuplicates -> DropNearDuplicates -> KeyByShard -> GroupByShard -> WriteShards -> WriteManifest

Fingerprints (``release.fingerprint``): ``EncodeAndStage`` decodes the JPEG it publishes once and records its
PDQ hash and pixels' sha256 with the image. There, too, an image whose published pixels are a removed image's
(pixels_sha256) or within ``MATCH_DISTANCE`` of a removed image's PDQ (any rotation/mirroring, or inside its
borders) is blocked: the ledger's and the previous release's log's fingerprints. Two sources that publish the
same pixels (the same JPEG with different metadata, say) are one image: ``DeduplicatePixels`` groups the small
staged records (never pixels) by pixels_sha256 and counts all but the first source as duplicates. That is the
first place the published pixels exist; earlier, only the source bytes are known (``Deduplicate``). Near-copies
(re-encoded, resized, turned, framed: ``pipeline.near_duplicates``) are grouped next: every staged record carries a
small ``NearKey`` (its PDQ hashes), ``CollectNearKeys`` gathers the keys in one list, ``GroupNearDuplicates``
walks them once (an unframed copy, then the largest, is kept), and ``DropNearDuplicates`` counts the copies as
duplicates (``--near-duplicates publish-one``) or marks them ``near_duplicate_of`` the kept image (``publish-all``).
The manifest counts the duplicates by reason: same_source, same_pixels, near_duplicate.

Memory stays flat in the number of images: only (image ID, path) pairs are shuffled for de-duplication, and
published images are staged as one file each under ``DIR/.staging/<resume key>/`` so that only small records
are grouped by shard; they stay until the release is committed, so that a rerun of an interrupted build skips
what it already staged (``Resume``). Shard files are written under the build's generation (new names), and
``WriteManifest`` renames the manifest in last: the commit (``release.layout``). Everything about the release
format (IDs, paths, shard files through the format registry, the manifest) is ``veilset.release``'s; all file I/O goes through ``release.storage`` (local or Beam ``FileSystems``).
Every stage that can fail sends a ``Reject`` to the ``rejects`` output; the manifest step checks that
``input == published + rejected + duplicates + blocked``. With a progress folder, each of those outputs also
goes to a ``CountFinished``, so every input is counted once when it is finished (``pipeline.progress``).
"""
from __future__ import annotations

import json
import logging
import pickle
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.pvalue import AsSingleton, TaggedOutput

from veilset.detectors.handler import DetectorModelHandler
from veilset.detectors.registry import with_threads
from veilset.pipeline.anonymize import anonymize, seed_for_image
from veilset.pipeline.decode import DecodeError, decode_resized
from veilset.pipeline.encode import encode_jpeg, strip_jpeg_metadata
from veilset.pipeline import near_duplicates
from veilset.pipeline.ingest import InputError, InputFile, read_input, safe_detail
from veilset.pipeline.options import BuildOptions
from veilset.pipeline.progress import Counter as ProgressCounter
from veilset.pipeline.records import AnonymizedImage, DecodedImage, DetectedImage, Reject
from veilset.release import fingerprint, ids, index, layout, log as release_log, manifest, shards, storage
from veilset.release.manifest import NEAR_DUPLICATE, PUBLISH_ALL, SAME_PIXELS, SAME_SOURCE
from veilset.release.jpeg import strict_violations
from veilset.release.records import PublishedImage, ShardFile

LOG = logging.getLogger("veilset.build")
REJECTS = "rejects"


@dataclass(frozen=True)
class SourceRef:
    """An input file known by its content: shuffled instead of its bytes."""

    image_id: str
    content_sha256: str
    input: InputFile

    @property
    def source(self) -> str:
        return self.input.source


@dataclass(frozen=True)
class StagedImage:
    image_id: str
    shard: int
    staging_path: str
    source: str = ""  # the input file, for a reject record
    pixels_sha256: str = ""  # of the published pixels ("": not known, never grouped with another image)
    near_key: near_duplicates.NearKey | None = None  # for grouping near-copies (dropped once grouped)
    near_duplicate_of: str = ""  # --near-duplicates publish-all: the published image this one copies


@dataclass(frozen=True)
class Blocked:
    """An input not published because a takedown removed it (or a copy of it): why, for the manifest and log."""

    source: str
    reason: str  # removed_id, removed_content, removed_pixels, near_duplicate


# ------------------------------------------------------------------------------------------------ DoFns (thin)
class ReadAndHash(beam.DoFn):
    def __init__(self, max_file_bytes: int):
        self._limit = max_file_bytes

    def process(self, item: InputFile) -> Iterator[Any]:
        try:
            data = read_input(item, self._limit)
        except OverflowError as err:
            yield TaggedOutput(REJECTS, Reject(item.source, "read", "too_large", str(err)))
            return
        except InputError as err:  # a FIFO or link swapped in after listing, permission denied, ...
            yield TaggedOutput(REJECTS, Reject(item.source, "read", err.reason, safe_detail(err.detail, item)))
            return
        except Exception as err:  # unreadable, vanished: data, not a crash
            yield TaggedOutput(REJECTS, Reject(item.source, "read", "unreadable", safe_detail(err, item)))
            return
        content = ids.sha256_hex(data)
        yield SourceRef(ids.image_id_for(content), content, item)


class DropBlocked(beam.DoFn):
    """Skips everything a takedown ever removed (ledger blocklist: image IDs and content hashes)."""

    BLOCKED = "blocked"

    def __init__(self, blocked_ids: frozenset[str], blocked_hashes: frozenset[str]):
        self._ids, self._hashes = blocked_ids, blocked_hashes

    def process(self, ref: SourceRef) -> Iterator[Any]:
        if ref.image_id in self._ids:
            yield TaggedOutput(self.BLOCKED, Blocked(ref.source, "removed_id"))
        elif ref.content_sha256 in self._hashes:
            yield TaggedOutput(self.BLOCKED, Blocked(ref.source, "removed_content"))
        else:
            yield ref


def deduplicate_pixels(item: tuple[str, Iterable[StagedImage]]) -> Iterator[Any]:
    """Sources whose published pixels are the same are one image: published once (the first source name)."""
    staged = sorted(item[1], key=lambda s: (s.source, s.image_id))
    yield staged[0]
    for s in staged[1:]:
        LOG.info("%s publishes the same pixels as %s: a duplicate", s.source, staged[0].source)
        yield TaggedOutput("duplicates", s.source)


def drop_near_duplicates(staged: StagedImage, groups: dict[str, near_duplicates.NearDuplicate],
                         mode: str) -> Iterator[Any]:
    """A near-copy of a kept image (``groups``: ``near_duplicates.group``'s answer) is a duplicate
    (publish-one) or published marked ``near_duplicate_of`` the kept image (publish-all)."""
    staged = replace(staged, near_key=None)  # not needed past here: the shard shuffle stays small
    found = groups.get(staged.image_id)
    if found is None:
        yield staged
    elif mode == PUBLISH_ALL:
        yield replace(staged, near_duplicate_of=found.of)
    else:
        LOG.info("%s is a near-copy of %s (%d bits): a duplicate", staged.source, found.of, found.distance)
        yield TaggedOutput("duplicates", staged.source)


def deduplicate(item: tuple[str, Iterable[SourceRef]]) -> Iterator[Any]:
    """Byte-identical inputs are published once (the lexicographically first source name); the rest are counted."""
    refs = sorted(item[1], key=lambda r: r.source)
    yield refs[0]
    for ref in refs[1:]:
        yield TaggedOutput("duplicates", ref.source)


class Decode(beam.DoFn):
    def __init__(self, opts: BuildOptions):
        self._opts = opts

    def process(self, ref: SourceRef) -> Iterator[Any]:
        try:
            data = read_input(ref.input, self._opts.max_file_bytes)
        except InputError as err:
            yield TaggedOutput(REJECTS, Reject(ref.source, "decode", err.reason, safe_detail(err.detail, ref.input)))
            return
        except Exception as err:
            yield TaggedOutput(REJECTS, Reject(ref.source, "decode", "unreadable", safe_detail(err, ref.input)))
            return
        if ids.sha256_hex(data) != ref.content_sha256:
            yield TaggedOutput(REJECTS, Reject(ref.source, "decode", "changed_during_build", "content hash differs"))
            return
        try:
            # draft: a JPEG that will be downscaled >= 2x is decoded by libjpeg at a reduced DCT scale first
            pixels = decode_resized(data, max_pixels=self._opts.max_pixels,
                                    max_short_side=self._opts.max_short_side, draft=self._opts.draft_decode)
        except DecodeError as err:
            yield TaggedOutput(REJECTS, Reject(ref.source, "decode", err.reason, safe_detail(err.detail, ref.input)))
            return
        lossless = strip_jpeg_metadata(data, max_short_side=self._opts.max_short_side)
        image = DecodedImage(ref.image_id, ref.source, ref.content_sha256, pixels, lossless)
        yield image, pixels  # keyed for RunInference: key = record, example = pixels


def _failed_batches_to_rejects(stage: str) -> beam.PTransform:
    """RunInference dead letters (batch, exception) -> one Reject per image of the batch: never published."""

    def explode(failed: Any) -> Iterator[Reject]:
        batch, exc = failed
        for key, _ in batch:
            record = key.image if isinstance(key, DetectedImage) else key
            yield Reject(record.source, stage, "model_error", safe_detail(exc))

    return beam.FlatMap(explode)


def _no_detections(image: DecodedImage, _pixels: Any) -> tuple[DetectedImage, Any]:
    return DetectedImage(image, ()), image.pixels


def _attach_detections(item: tuple[DetectedImage, Any]) -> tuple[DetectedImage, Any]:
    detected, result = item
    return DetectedImage(detected.image, detected.detections + tuple(result.inference)), detected.image.pixels


class Anonymize(beam.DoFn):
    def __init__(self, opts: BuildOptions, detectors: dict[str, Any]):
        self._opts, self._detectors = opts, detectors

    def process(self, item: tuple[DetectedImage, Any]) -> Iterator[Any]:
        detected = item[0]
        image = detected.image
        try:
            pixels, record = anonymize(image.pixels, detected.detections, method=self._opts.anonymize_method,
                                       margin=self._opts.margin, seed=seed_for_image(image.image_id))
        except Exception as err:
            yield TaggedOutput(REJECTS, Reject(image.source, "anonymize", "anonymize_error", safe_detail(err)))
            return
        # Nothing to anonymize and a clean baseline source: publish the source's entropy-coded data losslessly.
        lossless = image.lossless_jpeg if not record["regions"] else None
        record = dict(record, detectors=self._detectors, encoding="lossless_strip" if lossless else "reencoded")
        yield AnonymizedImage(image.image_id, image.source, image.content_sha256, pixels, detected.detections,
                              record, lossless), pixels


@dataclass(frozen=True)
class StagedRecord:
    """What a staging file holds: the published image and its key for near-copy grouping (so that a resumed
    image is not decoded and hashed again)."""

    image: PublishedImage
    near_key: near_duplicates.NearKey | None = None


def read_staged(path: str) -> StagedRecord:
    record = pickle.loads(storage.read(path))
    return record if isinstance(record, StagedRecord) else StagedRecord(record)  # a bare image: keyed on resume


def staging_path(output: str, resume_key: str, image_id: str) -> str:
    """Where a published image's record is staged (kept until the release is committed: a rerun of the same
    build, same ``resume_key``, reuses it instead of decoding and detecting again)."""
    return storage.join(output, f"{layout.STAGING}/{resume_key}/{image_id}.pkl")


class Resume(beam.DoFn):
    """An image already staged by an interrupted run of this same build skips decode, detection and encoding;
    it is checked against the removed images' fingerprints again (the ledger may have grown since)."""

    RESUMED = "resumed"
    BLOCKED = "blocked_resumed"

    def __init__(self, output: str, num_shards: int, resume_key: str, removed: "RemovedFingerprints | None" = None):
        self._output, self._num_shards, self._key = output, num_shards, resume_key
        self._removed = removed or RemovedFingerprints((), frozenset())

    def process(self, ref: SourceRef) -> Iterator[Any]:
        path = staging_path(self._output, self._key, ref.image_id)
        if not storage.exists(path):
            yield ref
            return
        staged = read_staged(path)
        key = staged.near_key
        if self._removed.active or key is None:  # decoded only when there is something to compute
            pixels = fingerprint.decode_rgb(staged.image.jpeg)
            fp = fingerprint.fingerprint(pixels)
            hit = self._removed.match(pixels, fp)
            if hit is not None:
                LOG.warning("%s blocked: %s (%s)", ref.source, hit[0], hit[1])
                yield TaggedOutput(self.BLOCKED, Blocked(ref.source, hit[0]))
                return
            key = key or near_duplicates.near_key(ref.image_id, ref.source, pixels, fp)
        yield TaggedOutput(self.RESUMED, StagedImage(
            ref.image_id, ids.shard_of(ref.image_id, self._num_shards), path, ref.source, staged.image.pixels_sha256,
            key))


class RemovedFingerprints:
    """The fingerprints of removed images a build must not publish again: exact pixels, and PDQ hashes (each
    labelled with what it is: a removed image ID or a request) searched within ``MATCH_DISTANCE``, with the
    hashes of each removed image's crop windows (a copy cut by up to 10 % per side is blocked too)."""

    def __init__(self, pdq: tuple[tuple[str, str], ...], pixels: frozenset[str],
                 windows: tuple[tuple[str, bytes], ...] = ()):
        self._pdq, self._pixels, self._windows = pdq, pixels, windows
        self._index: fingerprint.NearDuplicateIndex | None = None

    @property
    def active(self) -> bool:
        """Anything to compare with (else ``match`` is None for every image)."""
        return bool(self._pdq or self._pixels or self._windows)

    def match(self, pixels: Any, fp: fingerprint.Fingerprint) -> tuple[str, str] | None:
        """(reason, detail) when the published pixels are a removed image's or a near-duplicate of one."""
        if fp.pixels_sha256 in self._pixels:
            return "removed_pixels", "the same pixels as a removed image"
        if not self._pdq and not self._windows:
            return None
        if self._index is None:
            self._index = self._build_index()
        hashes, quality = fingerprint.query_hashes(pixels, dihedral=True)
        found = self._index.query(hashes, fingerprint.MATCH_DISTANCE)
        if not found:
            return None
        if quality < fingerprint.MIN_QUALITY:  # a flat picture: its matches are unreliable (grey), not blocked
            LOG.warning("a published image of PDQ quality %d is %d bits from removed %s: not blocked, look at it",
                        quality, found[0].distance, found[0].image_id)
            return None
        return NEAR_DUPLICATE, f"{found[0].distance} bits from removed {found[0].image_id}"


    def _build_index(self) -> fingerprint.NearDuplicateIndex:
        found = fingerprint.NearDuplicateIndex([label for label, _ in self._pdq], [h for _, h in self._pdq])
        for label, blob in self._windows:
            hashes = fingerprint.split_hashes(blob)
            found.add_many([label] * len(hashes), hashes)
        return found


class EncodeAndStage(beam.DoFn):
    """Encode the published JPEG (no metadata at all), fingerprint its decoded pixels, block it when a takedown
    removed it or a near-duplicate of it, and stage the record as one file for the shard writer."""

    BLOCKED = "blocked_copies"

    def __init__(self, output: str, num_shards: int, quality: int, resume_key: str,
                 removed: RemovedFingerprints | None = None):
        self._output, self._num_shards, self._quality = output, num_shards, quality
        self._resume_key = resume_key
        self._removed = removed or RemovedFingerprints((), frozenset())

    def process(self, item: tuple[AnonymizedImage, tuple]) -> Iterator[Any]:
        image, masks = item
        try:
            jpeg = image.lossless_jpeg or encode_jpeg(image.pixels, quality=self._quality)
            violations = strict_violations(jpeg)
            if violations:  # only the image is published (checked on the very bytes that are staged)
                yield TaggedOutput(REJECTS, Reject(image.source, "encode", "not_strict", "; ".join(violations)))
                return
            published_pixels = fingerprint.decode_rgb(jpeg)
            fp = fingerprint.fingerprint(published_pixels)
            hit = self._removed.match(published_pixels, fp)
            if hit is not None:
                LOG.warning("%s blocked: %s (%s)", image.source, hit[0], hit[1])
                yield TaggedOutput(self.BLOCKED, Blocked(image.source, hit[0]))
                return
            published = PublishedImage(
                image_id=image.image_id, content_sha256=image.content_sha256,
                width=int(image.pixels.shape[1]), height=int(image.pixels.shape[0]), jpeg=jpeg,
                sha256=ids.sha256_hex(jpeg), detections=image.detections, anonymization=image.anonymization,
                masks=tuple(masks), pdq=fp.pdq_hex, pixels_sha256=fp.pixels_sha256)
            key = near_duplicates.near_key(image.image_id, image.source, published_pixels, fp)
            staged = staging_path(self._output, self._resume_key, image.image_id)
            storage.atomic_write(staged, pickle.dumps(StagedRecord(published, key), protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as err:
            yield TaggedOutput(REJECTS, Reject(image.source, "encode", "encode_error", safe_detail(err)))
            return
        yield StagedImage(image.image_id, ids.shard_of(image.image_id, self._num_shards), staged, image.source,
                          fp.pixels_sha256, key)


class CountFinished(beam.DoFn):
    """One count per finished input (staged, rejected, duplicate or blocked) into this instance's counter file
    under the build's progress folder; the driver sums the files (``pipeline.progress.FolderProgress``)."""

    def __init__(self, folder: str):
        self._folder = folder
        self._counter: ProgressCounter | None = None

    def setup(self) -> None:
        self._counter = ProgressCounter(self._folder)

    def process(self, _finished: Any) -> Iterator[Any]:
        assert self._counter is not None
        self._counter.add()
        return iter(())

    def finish_bundle(self) -> None:
        if self._counter is not None:
            self._counter.flush()


class WriteShards(beam.DoFn):
    """Write one shard's files under the build's generation (new names: the release being replaced stays whole
    until the manifest is swapped in). The staged records stay until the commit (the driver removes them)."""

    def __init__(self, output: str, num_shards: int, formats: tuple[str, ...], generation: int):
        self._output, self._num_shards, self._formats = output, num_shards, formats
        self._generation = generation

    def process(self, item: tuple[int, Iterable[StagedImage]]) -> Iterator[Any]:
        """The shard's files; an image whose integer ids clash with an earlier one's (``ids.clashes``, rare and
        deterministic) is a reject ``write:id_clash`` instead of a COCO file with a repeated id."""
        shard, staged = item
        staged = sorted(staged, key=lambda s: s.image_id)
        images = [_published(s) for s in staged]
        clashing = ids.clashes((im.image_id, len(im.masks)) for im in images)
        for s in staged:
            if s.image_id in clashing:
                what = clashing[s.image_id][1]
                LOG.warning("%s: %s is taken by another image of shard %d: rejected", s.image_id, what, shard)
                yield TaggedOutput(REJECTS, Reject(s.source, "write", "id_clash",
                                                   f"{what} is taken by another image of its shard"))
        images = [im for im in images if im.image_id not in clashing]
        yield from shards.write_shard(self._output, shard, self._num_shards, self._formats, images, self._generation)


def _published(staged: StagedImage) -> PublishedImage:
    image = read_staged(staged.staging_path).image
    return replace(image, near_duplicate_of=staged.near_duplicate_of) if staged.near_duplicate_of else image


class WriteManifest(beam.DoFn):
    """Runs once at the end: writes rejects.jsonl and manifest.json (the driver removes superseded files)."""

    def __init__(self, opts: BuildOptions, num_inputs: int, num_shards: int, models: dict[str, Any],
                 previous: manifest.Manifest | None = None):
        self._opts, self._num_inputs, self._num_shards, self._models = opts, num_inputs, num_shards, models
        self._previous = previous  # the release this build replaces: its number + 1, its takedown log
        self._release = previous.release + 1 if previous else 1

    def process(self, _: Any, shard_files: list[ShardFile], rejects: list[Reject],
                duplicates: list[tuple[str, int]], blocked: list[Blocked],
                near: dict[str, near_duplicates.NearDuplicate]) -> Iterator[manifest.Manifest]:
        rejects = sorted(rejects, key=lambda r: (r.source, r.stage, r.reason))
        published = sum(f.images for f in shard_files if f.format == index.NAME)
        counts = manifest.Counts(input=self._num_inputs, published=published, rejected=len(rejects),
                                 duplicates=sum(n for _, n in duplicates), blocked=len(blocked))
        marked = len(near) if self._opts.near_duplicates == PUBLISH_ALL else 0
        built = manifest.Manifest.for_build(
            created=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), num_shards=self._num_shards,
            formats=self._opts.formats, files=shard_files, counts=counts,
            rejects_by_reason=Counter(f"{r.stage}:{r.reason}" for r in rejects), config=self._opts.to_config(),
            models=self._models, release=self._release, log=self._previous.log if self._previous else (),
            rejects=layout.rejects_name(self._release), blocked_by_reason=Counter(b.reason for b in blocked),
            duplicates_by_reason=dict(duplicates), near_duplicates_published=marked)
        if self._previous is not None and self._previous.removed_windows:  # carried: the takedowns' windows
            built = replace(built, removed_windows=self._previous.removed_windows)
        storage.atomic_write(storage.join(self._opts.output, built.rejects),
                             b"".join(json.dumps(r.to_dict(), sort_keys=True).encode() + b"\n" for r in rejects))
        manifest.write(self._opts.output, built)  # the commit; the driver then removes superseded files
        yield built


# ------------------------------------------------------------------------------------------------ the graph


def _windows_of(release_dir: str, previous: manifest.Manifest) -> tuple[tuple[str, bytes], ...]:
    """(label, crop window hash) of every row of the release's ``removed_windows`` file: a rebuild in the
    release's folder blocks crops of removed images without the ledger too."""
    found = fingerprint.read_listed_index(release_dir, previous.removed_windows)
    return tuple(zip(found.image_ids, (row.tobytes() for row in found.hashes())))


def build_graph(p: beam.Pipeline, opts: BuildOptions, inputs: list[InputFile], *, num_shards: int,
                models: dict[str, Any], blocked_ids: frozenset[str] = frozenset(),
                blocked_hashes: frozenset[str] = frozenset(), blocked_pdq: tuple[tuple[str, str], ...] = (),
                blocked_pixels: frozenset[str] = frozenset(), blocked_windows: tuple[tuple[str, bytes], ...] = (),
                detector_threads: int | None = None,
                previous: manifest.Manifest | None = None, generation: int = 1, resume_key: str = "build",
                listing_rejects: tuple[Reject, ...] = (), progress_dir: str | None = None) -> beam.PCollection:
    """Compose the build. Returns the PCollection holding the single ``release.manifest.Manifest``.

    ``inputs``/``listing_rejects``: ``ingest.list_inputs``'s files and rejects (both count as inputs).
    ``blocked_*``: what takedowns removed (``options.Blocklist``): IDs and source/published hashes (dropped on
    reading), and the fingerprints of removed images: (label, PDQ hex), pixels_sha256 and (removed ID, crop windows'
    hashes) (blocked once the published pixels exist, in ``EncodeAndStage``).

    ``detector_threads``: onnxruntime/torch threads per detector in each worker process (the DirectRunner's
    ``--workers`` processes share this machine's cores; None leaves each detector's default). ``previous``: the
    release in the output folder, if any: this build is its next release, and every image its log says was
    taken down, and every near-duplicate of one (the log's fingerprints), stays out (blocked) even without the
    ledger. ``generation``: the release number this build's files
    are named with; ``resume_key``: where its records are staged (a rerun reuses what an interrupted run staged).
    ``progress_dir``: a local folder where every finished input is counted (``CountFinished``; None: not counted).
    """
    if previous is not None:
        blocked_ids = blocked_ids | release_log.blocked_ids(previous.log)
        blocked_pdq = tuple(sorted(set(blocked_pdq) | set(release_log.blocked_pdq(previous.log))))
        blocked_pixels = blocked_pixels | release_log.blocked_pixels(previous.log)
        blocked_windows = blocked_windows + _windows_of(opts.output, previous)
    read = (
        p
        | "ListInputs" >> beam.Create(list(inputs))
        | "Distribute" >> beam.Reshuffle()
        | "ReadAndHash" >> beam.ParDo(ReadAndHash(opts.max_file_bytes)).with_outputs(REJECTS, main="refs")
    )
    allowed = read.refs | "DropBlocked" >> beam.ParDo(DropBlocked(blocked_ids, blocked_hashes)).with_outputs(
        DropBlocked.BLOCKED, main="allowed")
    unique = (
        allowed.allowed
        | "KeyById" >> beam.Map(lambda r: (r.image_id, r))
        | "GroupById" >> beam.GroupByKey()
        | "Deduplicate" >> beam.FlatMap(deduplicate).with_outputs("duplicates", main="unique")
    )
    removed = RemovedFingerprints(blocked_pdq, blocked_pixels, blocked_windows)
    todo = unique.unique | "Resume" >> beam.ParDo(Resume(opts.output, num_shards, resume_key, removed)).with_outputs(
        Resume.RESUMED, Resume.BLOCKED, main="todo")
    decoded = todo.todo | "Decode" >> beam.ParDo(Decode(opts)).with_outputs(REJECTS, main="images")

    reject_parts = [read[REJECTS], decoded[REJECTS], p | "ListingRejects" >> beam.Create(list(listing_rejects))]
    detected = decoded.images | "StartRecords" >> beam.MapTuple(_no_detections)
    for label, spec in (("Faces", opts.face_detector), ("Plates", opts.plate_detector)):
        if spec == "none":
            continue
        handler = KeyedModelHandler(DetectorModelHandler(with_threads(spec, detector_threads)))
        result, dlq = detected | f"Detect{label}" >> RunInference(handler).with_exception_handling()
        reject_parts.append(dlq.failed_inferences
                            | f"Detect{label}Failures" >> _failed_batches_to_rejects(f"detect_{label.lower()}"))
        detected = result | f"Attach{label}" >> beam.Map(_attach_detections)

    anonymized = detected | "Anonymize" >> beam.ParDo(Anonymize(opts, _detector_names(models))).with_outputs(
        REJECTS, main="images")
    reject_parts.append(anonymized[REJECTS])
    if opts.masks == "none":
        with_masks = anonymized.images | "SkipMasks" >> beam.MapTuple(lambda image, _px: (image, ()))
    else:
        from veilset.segmentation.handler import MaskGeneratorModelHandler

        handler = KeyedModelHandler(MaskGeneratorModelHandler(opts.masks, device=opts.device))
        result, dlq = anonymized.images | "GenerateMasks" >> RunInference(handler).with_exception_handling()
        reject_parts.append(dlq.failed_inferences | "GenerateMasksFailures" >> _failed_batches_to_rejects("masks"))
        with_masks = result | "AttachMasks" >> beam.MapTuple(lambda image, res: (image, tuple(res.inference)))

    staged = with_masks | "EncodeAndStage" >> beam.ParDo(
        EncodeAndStage(opts.output, num_shards, opts.jpeg_quality, resume_key, removed)).with_outputs(
        REJECTS, EncodeAndStage.BLOCKED, main="staged")
    reject_parts.append(staged[REJECTS])
    same_pixels = (
        (staged.staged, todo[Resume.RESUMED])
        | "WithResumed" >> beam.Flatten()
        | "KeyByPixels" >> beam.Map(lambda s: (s.pixels_sha256 or s.image_id, s))
        | "GroupByPixels" >> beam.GroupByKey()
        | "DeduplicatePixels" >> beam.FlatMap(deduplicate_pixels).with_outputs("duplicates", main="unique")
    )
    near_groups = (
        same_pixels.unique
        | "NearKeys" >> beam.FlatMap(lambda s: [s.near_key] if s.near_key is not None else [])
        | "CollectNearKeys" >> beam.combiners.ToList()
        | "GroupNearDuplicates" >> beam.Map(near_duplicates.group)
    )
    near = same_pixels.unique | "DropNearDuplicates" >> beam.FlatMap(
        drop_near_duplicates, groups=AsSingleton(near_groups), mode=opts.near_duplicates).with_outputs(
        "duplicates", main="unique")
    shard_files = (
        near.unique
        | "KeyByShard" >> beam.Map(lambda s: (s.shard, s))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.ParDo(WriteShards(opts.output, num_shards, opts.formats, generation)).with_outputs(
            REJECTS, main="files")
    )
    # an id clash rejects, and a pixel or near duplicate drops, a staged image: it was counted when it was staged
    if progress_dir is not None:
        _count_finished(progress_dir, [*reject_parts, allowed[DropBlocked.BLOCKED], unique.duplicates, staged.staged,
                                       staged[EncodeAndStage.BLOCKED], todo[Resume.RESUMED], todo[Resume.BLOCKED]])
    reject_parts.append(shard_files[REJECTS])
    rejects = tuple(reject_parts) | "FlattenRejects" >> beam.Flatten()
    duplicates = (
        [dups | f"Reason{label}" >> beam.Map(lambda _, reason=reason: reason)
         for label, reason, dups in (("SameSource", SAME_SOURCE, unique.duplicates),
                                     ("SamePixels", SAME_PIXELS, same_pixels.duplicates),
                                     ("NearCopy", NEAR_DUPLICATE, near.duplicates))]
        | "FlattenDuplicates" >> beam.Flatten()
        | "CountDuplicatesByReason" >> beam.combiners.Count.PerElement()
    )
    blocked = ((allowed[DropBlocked.BLOCKED], staged[EncodeAndStage.BLOCKED], todo[Resume.BLOCKED])
               | "FlattenBlocked" >> beam.Flatten())
    return (
        p
        | "Finish" >> beam.Create([None])
        | "WriteManifest" >> beam.ParDo(
            WriteManifest(opts, len(inputs) + len(listing_rejects), num_shards, models, previous),
            shard_files=AsSingleton(shard_files.files | "CollectShardFiles" >> beam.combiners.ToList()),
            rejects=AsSingleton(rejects | "CollectRejects" >> beam.combiners.ToList()),
            duplicates=AsSingleton(duplicates | "CollectDuplicates" >> beam.combiners.ToList()),
            blocked=AsSingleton(blocked | "CollectBlocked" >> beam.combiners.ToList()),
            near=AsSingleton(near_groups),
        )
    )


def _count_finished(folder: str, outputs: list[beam.PCollection]) -> None:
    """A ``CountFinished`` on each output where an input ends, not on their Flatten: each count runs fused with
    the step that finished the input, so it is live (a Flatten's consumer runs after all its producers)."""
    for i, pcoll in enumerate(outputs):
        _ = pcoll | f"CountFinished{i}" >> beam.ParDo(CountFinished(folder))


def _detector_names(models: dict[str, Any]) -> dict[str, Any]:
    """Per-image record of which detectors ran (name + weights hash), kept small."""
    out = {}
    for key in ("face_detector", "plate_detector"):
        ident = models.get(key)
        out[key] = None if ident is None else {k: ident[k] for k in ("name", "version", "weights_sha256", "threshold")
                                                 if k in ident}
    return out
