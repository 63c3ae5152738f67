"""Read-only view of a release on local disk, for the audit: lenient where the builder is strict.

Every file is read through the release format's registry (``veilset.release.registry``), with each format's
lenient views (``count``, ``records``, ``copies``: plain json, tarfile and pyarrow on the bytes, never the
builder's record classes), so a new format is audited without touching this module. Parse errors are raised as
``ReleaseReadError`` naming the file; the integrity check turns them into findings, the other checks skip what
they cannot read.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator, TypeVar

from veilset.release import coco, index, layout, parquet, registry, sa1b, storage
from veilset.release.format import FormatError, ShardFormat, ShardKey
from veilset.release.layout import MANIFEST_NAME, MARKER_NAME, REJECTS_NAME
from veilset.release.manifest import load_manifest
from veilset.release.records import ImageCopy, ImageRecord  # noqa: F401  (re-exported)

INDEX = index.NAME
T = TypeVar("T")


class ReleaseReadError(Exception):
    """A listed file is missing or cannot be parsed; ``file`` is relative to the release root."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


class Release:
    def __init__(self, root: str) -> None:
        if storage.is_remote(root):
            raise ValueError(f"--release: only local release folders can be audited, got {root!r}")
        if not os.path.isdir(root):
            raise ValueError(f"--release: {root!r} is not a folder")
        self.root = root
        self.manifest = load_manifest(root)
        self.num_shards = int(self.manifest.get("num_shards", 0))
        self.formats = tuple(self.manifest.get("formats", ()))
        self._index: dict[str, list[dict[str, Any]]] = {}
        self._files: list[str] | None = None
        self.on_image: Callable[[], None] | None = None  # called per image iter_copies_of hands out (progress)
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, build: Callable[[], T]) -> T:
        """``build()``, once per release object: what several checks derive from the same files (a release is
        read, never written, during an audit)."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    # ------------------------------------------------------------------------------------------ files
    def path(self, rel: str) -> str:
        return storage.join(self.root, rel)

    def read(self, rel: str) -> bytes:
        try:
            return storage.read(self.path(rel))
        except OSError as err:
            raise ReleaseReadError(rel, f"cannot read: {err.strerror or err}") from None

    def all_files(self) -> list[str]:
        """Every file under the root (hidden and temp files included), relative, '/'-separated, sorted.

        Listed once per ``Release`` (an audit reads a release that nobody is writing)."""
        if self._files is None:
            self._files = self._walk()
        return list(self._files)

    def _walk(self) -> list[str]:
        out = []
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in files:
                full = os.path.join(folder, name)
                out.append(os.path.relpath(full, self.root).replace(os.sep, "/"))
        return sorted(out)

    def shard_entries(self, fmt: str) -> list[dict[str, Any]]:
        """Manifest entries of one format ("index" reads the manifest's ``index`` list)."""
        if fmt == INDEX:
            return list(self.manifest.get("index", []))
        return [e for e in self.manifest.get("shards", []) if e.get("format") == fmt]

    def listed_files(self) -> set[str]:
        listed = {MANIFEST_NAME, MARKER_NAME}  # the marker is the release's identity (release.housekeeping)
        if self.manifest.get("rejects"):
            listed.add(self.manifest["rejects"])
        windows = self.manifest.get("removed_windows")
        if isinstance(windows, dict) and windows.get("path"):
            listed.add(str(windows["path"]))
        for entry in self.manifest.get("shards", []) + self.manifest.get("index", []):
            listed.add(entry.get("path", ""))
        return listed

    def image_files(self) -> list[str]:
        """Files on disk that belong to a per-image format (images/SSSSS/sa_<id>.jpg), listed or not."""
        per_image = [f for f in registry.all_formats() if not f.listed]
        return [rel for rel in self.all_files() if any(f.owns(rel) for f in per_image)]

    # ------------------------------------------------------------------------------------------ parsers
    def _parse(self, rel: str, parse: Callable[[bytes], T]) -> T:
        data = self.read(rel)
        try:
            return parse(data)
        except FormatError as err:
            raise ReleaseReadError(rel, str(err)) from None

    def index_rows(self, rel: str) -> list[dict[str, Any]]:
        if rel not in self._index:
            self._index[rel] = self._parse(rel, index.parse_lenient)
        return self._index[rel]

    def all_index_rows(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for entry in self.shard_entries(INDEX):
            try:
                out.extend((entry["path"], row) for row in self.index_rows(entry["path"]))
            except ReleaseReadError:
                continue
        return out

    def parquet_rows(self, rel: str, columns: list[str] | None = None,
                     image_ids: set[str] | None = None) -> list[dict[str, Any]]:
        """Rows of a Parquet shard; ``columns`` limits what is decoded, ``image_ids`` which rows are kept."""
        wanted = None if image_ids is None else frozenset(image_ids)
        return self._parse(rel, lambda data: parquet.read_rows(data, columns, wanted))

    def coco_doc(self, rel: str) -> dict[str, Any]:
        return self._parse(rel, coco.parse)

    def tar_members(self, rel: str) -> list[tuple[str, bytes]]:
        return self._parse(rel, sa1b.members)

    def count_images(self, fmt: str, rel: str) -> int:
        """Images in one listed file of ``fmt`` (every part of it parsed)."""
        if fmt == INDEX:
            return len(self.index_rows(rel))
        return self._parse(rel, registry.get(fmt).count)

    # ------------------------------------------------------------------------------------------ records
    def iter_records(self) -> Iterator[ImageRecord]:
        """Every per-image record of every format (index first), skipping files that cannot be read."""
        for entry in self.shard_entries(INDEX):
            try:
                yield from index.records(entry["path"], self.index_rows(entry["path"]))
            except ReleaseReadError:
                continue
        for fmt in _listed_formats():
            for entry in self.shard_entries(fmt.name):
                try:
                    records = self._parse(entry["path"], lambda data: list(fmt.records(entry["path"], data)))
                except ReleaseReadError:
                    continue
                yield from records

    def iter_copies(self) -> Iterator[ImageCopy]:
        """Every published JPEG: Parquet image bytes, images/ files, SA-1B tar members (registry order)."""
        for fmt in registry.all_formats():
            if not fmt.holds_jpegs:
                continue
            if not fmt.listed:
                for rel in self.image_files():
                    if fmt.owns(rel):
                        yield from fmt.copies(rel, self.read(rel))
                continue
            for entry in self.shard_entries(fmt.name):
                yield from self._copies(fmt, entry["path"])

    def _copies(self, fmt: ShardFormat, rel: str, image_ids: frozenset[str] | None = None) -> list[ImageCopy]:
        """The copies in one listed file ([] when it cannot be read: the integrity check reports it)."""
        try:
            return self._parse(rel, lambda data: list(fmt.copies(rel, data, image_ids)))
        except ReleaseReadError:
            return []

    def written_formats(self) -> tuple[ShardFormat, ...]:
        """The formats this release's ``formats`` write (unknown names ignored: integrity reports them)."""
        return registry.expand(registry.known(self.formats))

    def iter_decoded_copies(self, image_ids: Iterable[str]) -> Iterator[tuple[str, "ImageCopy", Any]]:
        """(image_id, copy, RGB pixels) for each distinct published copy of these images (identical bytes in
        several formats are decoded once); undecodable copies are skipped: the integrity check reports them."""
        from veilset.audit.imaging import decode_rgb

        for image_id, copies in self.iter_copies_of(image_ids):
            seen: set[bytes] = set()
            for copy in copies:
                if copy.data in seen:
                    continue
                seen.add(copy.data)
                try:
                    pixels = decode_rgb(copy.data)
                except Exception:  # noqa: BLE001 - integrity reports undecodable images
                    continue
                yield image_id, copy, pixels

    def iter_copies_of(self, image_ids: Iterable[str]) -> Iterator[tuple[str, list[ImageCopy]]]:
        """(image_id, its published copies in every format), one index shard at a time, so memory holds one
        shard's worth of the wanted images, not the release."""
        wanted = set(image_ids)
        by_shard: dict[int, set[str]] = {}
        for _, row in self.all_index_rows():
            if row["image_id"] in wanted and isinstance(row.get("shard"), int):
                by_shard.setdefault(row["shard"], set()).add(row["image_id"])
        on_disk = set(self.image_files())
        for shard in sorted(by_shard):
            ids_here = frozenset(by_shard[shard])
            copies: dict[str, list[ImageCopy]] = {i: [] for i in sorted(ids_here)}
            key = ShardKey(shard, self.num_shards, self.shard_generation(shard))
            for copy in self._shard_copies(key, ids_here, on_disk):
                copies[copy.image_id].append(copy)
            for item in copies.items():
                yield item
                if self.on_image is not None:
                    self.on_image()

    def _shard_copies(self, key: ShardKey, ids_here: frozenset[str], on_disk: set[str]) -> Iterator[ImageCopy]:
        for fmt in registry.all_formats():
            if not fmt.holds_jpegs:
                continue
            if fmt.listed and fmt.name in self.formats:
                yield from self._copies(fmt, fmt.path(key), ids_here)
            elif not fmt.listed:
                for rel in fmt.paths(key, sorted(ids_here)):
                    if rel in on_disk:
                        yield from fmt.copies(rel, self.read(rel), ids_here)

    def published_ids(self) -> list[str]:
        return sorted({row["image_id"] for _, row in self.all_index_rows()})

    def expected_shard_path(self, fmt: str, shard: int) -> str:
        return registry.shard_path(fmt, shard, self.num_shards, self.shard_generation(shard))

    def shard_generation(self, shard: Any) -> int:
        """The generation the manifest's index entry of ``shard`` names (every file of a shard has it)."""
        found = [str(e.get("path", "")) for e in self.shard_entries(INDEX) if e.get("shard") == shard]
        return layout.generation_of(found[0]) if found else 0


def _listed_formats() -> list[ShardFormat]:
    return [f for f in registry.all_formats() if f.listed]


REQUIRED_TOP_LEVEL = (MANIFEST_NAME, REJECTS_NAME)
