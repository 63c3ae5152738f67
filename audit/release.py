"""Read-only view of a release on local disk, parsed independently of the code that wrote it.

The auditor re-reads every format with the plain libraries (json, tarfile, pyarrow) instead of the builder's
readers, so a bug in the writer cannot hide itself. Parse errors are raised as ``ReleaseReadError`` naming the
file; the integrity check turns them into findings, the other checks skip what they cannot read.
"""
from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from veilset.pipeline import ids
from veilset.pipeline.manifest import MANIFEST_NAME, REJECTS_NAME, load_manifest

IMAGES_DIR = "images"
RECORD_COLUMNS = ["image_id", "width", "height", "sha256", "content_sha256", "detections", "anonymization", "masks"]
INDEX = "index"


class ReleaseReadError(Exception):
    """A listed file is missing or cannot be parsed; ``file`` is relative to the release root."""

    def __init__(self, file: str, message: str) -> None:
        super().__init__(f"{file}: {message}")
        self.file = file
        self.message = message


@dataclass(frozen=True)
class ImageRecord:
    """What one format says about one published image (``file`` is where it says it)."""

    image_id: str
    file: str
    width: int | None
    height: int | None
    sha256: str | None
    content_sha256: str | None
    detections: tuple[dict[str, Any], ...] | None  # None: this format carries no detections
    anonymization: dict[str, Any] | None
    masks: tuple[dict[str, Any], ...]  # SA-1B style annotations (segmentation, bbox, area, ...)


@dataclass(frozen=True)
class ImageCopy:
    """The bytes of one published copy of an image (``file``: images/... or shard path + ':' + member)."""

    image_id: str
    file: str
    data: bytes = field(repr=False)


class Release:
    def __init__(self, root: str) -> None:
        if "://" in root:
            raise ValueError(f"--release: only local release folders can be audited, got {root!r}")
        if not os.path.isdir(root):
            raise ValueError(f"--release: {root!r} is not a folder")
        self.root = root
        self.manifest = load_manifest(root)
        self.num_shards = int(self.manifest.get("num_shards", 0))
        self.formats = tuple(self.manifest.get("formats", ()))
        self._index: dict[str, list[dict[str, Any]]] = {}
        self._files: list[str] | None = None

    # ------------------------------------------------------------------------------------------ files
    def path(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/"))

    def read(self, rel: str) -> bytes:
        try:
            with open(self.path(rel), "rb") as fh:
                return fh.read()
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
        listed = {MANIFEST_NAME}
        if self.manifest.get("rejects"):
            listed.add(self.manifest["rejects"])
        for entry in self.manifest.get("shards", []) + self.manifest.get("index", []):
            listed.add(entry.get("path", ""))
        return listed

    # ------------------------------------------------------------------------------------------ parsers
    def index_rows(self, rel: str) -> list[dict[str, Any]]:
        if rel not in self._index:
            rows = []
            for n, line in enumerate(self.read(rel).decode("utf-8", "replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ReleaseReadError(rel, f"line {n} is not JSON: {err}") from None
                if not isinstance(row, dict) or "image_id" not in row:
                    raise ReleaseReadError(rel, f"line {n} has no image_id")
                rows.append(row)
            self._index[rel] = rows
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
        import pyarrow.parquet as pq

        data = self.read(rel)
        try:
            table = pq.read_table(io.BytesIO(data), columns=columns)
            if image_ids is not None:
                import pyarrow as pa
                import pyarrow.compute as pc

                table = table.filter(pc.is_in(table["image_id"], value_set=pa.array(sorted(image_ids),
                                                                                    pa.string())))
            return table.to_pylist()
        except Exception as err:  # pyarrow raises several types for damaged files
            raise ReleaseReadError(rel, f"not a readable Parquet file: {err}") from None

    def parquet_num_rows(self, rel: str) -> int:
        import pyarrow.parquet as pq

        data = self.read(rel)
        try:
            return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
        except Exception as err:  # pyarrow raises several types for damaged files
            raise ReleaseReadError(rel, f"not a readable Parquet file: {err}") from None

    def coco_doc(self, rel: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.read(rel))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ReleaseReadError(rel, f"not JSON: {err}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
            raise ReleaseReadError(rel, "not a COCO document (no images list)")
        return doc

    def tar_members(self, rel: str) -> list[tuple[str, bytes]]:
        data = self.read(rel)
        out = []
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                for info in tar:
                    fh = tar.extractfile(info) if info.isfile() else None
                    out.append((info.name, fh.read() if fh is not None else b""))
        except (tarfile.TarError, EOFError, OSError) as err:
            raise ReleaseReadError(rel, f"not a readable tar: {err}") from None
        return out

    # ------------------------------------------------------------------------------------------ records
    def iter_records(self) -> Iterator[ImageRecord]:
        """Every per-image record of every format, skipping files that cannot be read."""
        for entry in self.shard_entries(INDEX):
            try:
                for row in self.index_rows(entry["path"]):
                    yield ImageRecord(row["image_id"], entry["path"], row.get("width"), row.get("height"),
                                      row.get("sha256"), row.get("content_sha256"), None, None, ())
            except ReleaseReadError:
                continue
        for entry in self.shard_entries("parquet"):
            try:
                rows = self.parquet_rows(entry["path"], columns=RECORD_COLUMNS)
            except ReleaseReadError:
                continue
            for row in rows:
                anon = _json_or_none(row.get("anonymization"))
                yield ImageRecord(row.get("image_id"), entry["path"], row.get("width"), row.get("height"),
                                  row.get("sha256"), row.get("content_sha256"),
                                  tuple(row.get("detections") or ()), anon, tuple(row.get("masks") or ()))
        for entry in self.shard_entries("coco"):
            try:
                doc = self.coco_doc(entry["path"])
            except ReleaseReadError:
                continue
            by_int: dict[Any, list[dict[str, Any]]] = {}
            for ann in doc.get("annotations", []):
                by_int.setdefault(ann.get("image_id"), []).append(ann)
            for img in doc["images"]:
                dets = img.get("detections")
                yield ImageRecord(img.get("image_id"), entry["path"], img.get("width"), img.get("height"),
                                  img.get("sha256"), None, tuple(dets) if dets is not None else None,
                                  img.get("anonymization"), tuple(by_int.get(img.get("id"), ())))
        for member, name, data in self.iter_tar_members(".json"):
            try:
                meta = json.loads(data)
                image = meta["image"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                continue  # integrity reports unreadable members
            dets = meta.get("detections")
            yield ImageRecord(image.get("image_id"), member, image.get("width"), image.get("height"),
                              meta.get("sha256"), meta.get("content_sha256"),
                              tuple(dets) if dets is not None else None, meta.get("anonymization"),
                              tuple(meta.get("annotations") or ()))

    def iter_tar_members(self, suffix: str) -> Iterator[tuple[str, str, bytes]]:
        """("shard.tar:member", member name, bytes) of every readable SA-1B tar member ending in ``suffix``
        (unreadable tars are skipped here: the integrity check reports them)."""
        for entry in self.shard_entries("sa1b"):
            try:
                members = self.tar_members(entry["path"])
            except ReleaseReadError:
                continue
            for name, data in members:
                if name.endswith(suffix):
                    yield f"{entry['path']}:{name}", name, data

    def iter_copies(self) -> Iterator[ImageCopy]:
        """Every published JPEG: Parquet image bytes, COCO images/ files, SA-1B tar members."""
        for entry in self.shard_entries("parquet"):
            try:
                rows = self.parquet_rows(entry["path"], columns=["image_id", "image"])
            except ReleaseReadError:
                continue
            for row in rows:
                data = (row.get("image") or {}).get("bytes")
                if data is not None:
                    yield ImageCopy(row.get("image_id") or "", entry["path"], data)
        for rel in self.image_files():
            yield ImageCopy(image_id_of_name(rel), rel, self.read(rel))
        for member, name, data in self.iter_tar_members(".jpg"):
            yield ImageCopy(image_id_of_name(name), member, data)

    def image_files(self) -> list[str]:
        return [f for f in self.all_files() if f.startswith(IMAGES_DIR + "/") and f.endswith(".jpg")]

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
            ids_here = by_shard[shard]
            copies: dict[str, list[ImageCopy]] = {i: [] for i in sorted(ids_here)}
            if "parquet" in self.formats:
                try:
                    for row in self.parquet_rows(self.expected_shard_path("parquet", shard),
                                                 columns=["image_id", "image"], image_ids=ids_here):
                        data = (row.get("image") or {}).get("bytes")
                        if data is not None:
                            copies[row["image_id"]].append(
                                ImageCopy(row["image_id"], self.expected_shard_path("parquet", shard), data))
                except ReleaseReadError:
                    pass
            for image_id in ids_here:
                rel = ids.image_path(image_id, shard)
                if rel in on_disk:
                    copies[image_id].append(ImageCopy(image_id, rel, self.read(rel)))
            if "sa1b" in self.formats:
                rel = self.expected_shard_path("sa1b", shard)
                try:
                    for name, data in self.tar_members(rel):
                        if name.endswith(".jpg") and image_id_of_name(name) in ids_here:
                            copies[image_id_of_name(name)].append(
                                ImageCopy(image_id_of_name(name), f"{rel}:{name}", data))
                except ReleaseReadError:
                    pass
            yield from copies.items()

    def published_ids(self) -> list[str]:
        return sorted({row["image_id"] for _, row in self.all_index_rows()})

    def expected_shard_path(self, fmt: str, shard: int) -> str:
        return ids.shard_path(fmt, shard, self.num_shards)


def image_id_of_name(name: str) -> str:
    stem = name.rsplit("/", 1)[-1].split(":")[-1]
    return stem[:-4] if stem.endswith(".jpg") else stem


def _json_or_none(text: Any) -> dict[str, Any] | None:
    if isinstance(text, dict):
        return text
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


REQUIRED_TOP_LEVEL = (MANIFEST_NAME, REJECTS_NAME)
