"""The folder layout: every path of a release, relative to its root and '/'-separated.

    manifest.json                       MANIFEST_NAME
    rejects.jsonl                       REJECTS_NAME
    index/shard-SSSSS-of-NNNNN.jsonl    index_path()
    <dir>/shard-SSSSS-of-NNNNN<suffix>  shard_file(): one file per shard of a format (parquet/, coco/, sa1b/, ...)
    images/SSSSS/sa_<id>.jpg            image_path(): per-image published JPEGs
    .staging/                           STAGING: the build's staged records (gone when the build ends)
    .staging/progress/<id>.count        PROGRESS_DIR: the build's progress counters (gone when the build ends)
    .takedown/                          TAKEDOWN_DIR: a takedown apply's stage and journal (gone when it ends)
    .veilset-release.json               MARKER_NAME: marks the folder as a veilset release (its identity)
    .veilset-lock.json                  LOCK_NAME: who holds the writer lock (gone when the writer ends)

Formats name their own folder and suffix (``release.registry``); the paths are spelled here only.
"""
from __future__ import annotations

MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
INDEX_DIR = "index"
INDEX_SUFFIX = ".jsonl"
IMAGES_DIR = "images"
JPEG_SUFFIX = ".jpg"
STAGING = ".staging"
PROGRESS_DIR = f"{STAGING}/progress"
PROGRESS_SUFFIX = ".count"
TAKEDOWN_DIR = ".takedown"
MARKER_NAME = ".veilset-release.json"
LOCK_NAME = ".veilset-lock.json"


def shard_stem(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def shard_file(directory: str, suffix: str, shard: int, num_shards: int) -> str:
    """``parquet/shard-00003-of-00016.parquet`` for directory ``parquet``, suffix ``.parquet``, shard 3 of 16."""
    return f"{directory}/{shard_stem(shard, num_shards)}{suffix}"


def shard_number(rel: str) -> int:
    """The shard of a shard file path (``.../shard-00003-of-00016.x`` -> 3)."""
    return int(rel.rsplit("/", 1)[-1].split("-")[1])


def index_path(shard: int, num_shards: int) -> str:
    return shard_file(INDEX_DIR, INDEX_SUFFIX, shard, num_shards)


def jpeg_name(image_id: str) -> str:
    """Name of an image's JPEG inside a shard (Parquet ``image.path``, tar member, file under images/)."""
    return f"{image_id}{JPEG_SUFFIX}"


def image_dir(shard: int) -> str:
    return f"{IMAGES_DIR}/{shard:05d}"


def image_path(image_id: str, shard: int) -> str:
    """Path of a published per-image JPEG (the COCO ``file_name``), e.g. ``images/00003/sa_<id>.jpg``."""
    return f"{image_dir(shard)}/{jpeg_name(image_id)}"


def image_id_of_name(name: str) -> str:
    """The image ID a JPEG's path or member name claims (``images/00003/sa_x.jpg``, ``shard.tar:sa_x.jpg``)."""
    stem = name.rsplit("/", 1)[-1].split(":")[-1]
    return stem[: -len(JPEG_SUFFIX)] if stem.endswith(JPEG_SUFFIX) else stem
