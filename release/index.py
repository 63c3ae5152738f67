"""The index (``index/shard-SSSSS-of-NNNNN.jsonl``): one JSON line per published image, sorted by image ID.

Always written, whatever the formats; the one reader and writer of index files. A line:
``{"image_id", "shard", "sha256", "content_sha256", "width", "height", "file_name", "num_faces", "num_plates",
"num_masks", "pdq", "pixels_sha256"}`` (``file_name``: the images/ path when per-image JPEGs are written, else null;
``pdq``/``pixels_sha256``: the published pixels' fingerprints, ``release.fingerprint``, null in older releases),
and ``"near_duplicate_of"`` (the published image it is a near-copy of) on the rows of a ``--near-duplicates
publish-all`` build's near-copies only.
"""
from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

from veilset.release import layout, storage
from veilset.release.format import Fetch, FormatError, ShardKey
from veilset.release.records import ImageRecord, PublishedImage

NAME = "index"  # the ``format`` of index entries in the manifest
DIR = layout.INDEX_DIR


def path(key: ShardKey) -> str:
    return layout.index_path(key.shard, key.num_shards, key.generation)


def _line(im: PublishedImage, key: ShardKey, with_files: bool) -> str:
    return json.dumps({
        "image_id": im.image_id, "shard": key.shard, "sha256": im.sha256, "content_sha256": im.content_sha256,
        "width": im.width, "height": im.height,
        "file_name": layout.image_path(im.image_id, key.shard, key.generation) if with_files else None,
        "num_faces": sum(d.label == "face" for d in im.detections),
        "num_plates": sum(d.label == "license_plate" for d in im.detections),
        "num_masks": len(im.masks),
        "pdq": im.pdq or None, "pixels_sha256": im.pixels_sha256 or None,
        **({"near_duplicate_of": im.near_duplicate_of} if im.near_duplicate_of else {}),
    }, sort_keys=True)


def encode(images: Sequence[PublishedImage], key: ShardKey, with_files: bool) -> bytes:
    """The index file of one shard; ``with_files``: per-image JPEGs are published (``file_name`` set)."""
    lines = [_line(im, key, with_files) for im in images]
    return _join(lines)


def _join(lines: Sequence[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode() if lines else b""


def parse(data: bytes) -> list[dict[str, Any]]:
    """Rows of an index file written by ``encode`` (strict: a bad line raises)."""
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def parse_lenient(data: bytes) -> list[dict[str, Any]]:
    """Rows of any index file; ``FormatError`` naming the first line that is not an object with an image_id."""
    rows = []
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise FormatError(f"line {n} is not JSON: {err}") from None
        if not isinstance(row, dict) or "image_id" not in row:
            raise FormatError(f"line {n} has no image_id")
        rows.append(row)
    return rows




def read(release_dir: str, rel: str) -> list[dict[str, Any]]:
    """Rows of one index file of a release (``rel`` as the manifest lists it)."""
    return parse(storage.read(storage.join(release_dir, rel)))


def read_all(release_dir: str, entries: Sequence[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows of every listed index file (the manifest's ``index`` entries), in listed order."""
    for entry in entries:
        yield from read(release_dir, entry["path"])


def image_ids(release_dir: str, entries: Sequence[dict[str, Any]]) -> frozenset[str]:
    """Every published image ID of a release."""
    return frozenset(row["image_id"] for row in read_all(release_dir, entries))


def records(rel: str, rows: Sequence[dict[str, Any]]) -> Iterator[ImageRecord]:
    """What an index file says about each image (for the audit's cross-checks)."""
    for row in rows:
        yield ImageRecord(row["image_id"], rel, row.get("width"), row.get("height"), row.get("sha256"),
                          row.get("content_sha256"), None, None, ())
