"""The folder layout: every path of a release, relative to its root and '/'-separated.

    manifest.json                               MANIFEST_NAME: the commit point (renamed in atomically)
    rejects.rGGGGGG.jsonl                       rejects_name()
    index/shard-SSSSS-of-NNNNN.rGGGGGG.jsonl    index_path()
    <dir>/shard-SSSSS-of-NNNNN.rGGGGGG<suffix>  shard_file(): one file per shard of a format (parquet/, coco/, ...)
    images/SSSSS.rGGGGGG/sa_<id>.jpg            image_path(): per-image published JPEGs
    .staging/build.json                         BUILD_JOURNAL: the generation a build is writing (gone at its end)
    .staging/<key>/sa_<id>.pkl                  staged records, reused by a rerun of the same build (resume)
    .staging/progress/<id>.count                PROGRESS_DIR: the build's progress counters (gone at its end)
    .takedown/                                  TAKEDOWN_DIR: a takedown apply's stage and journal (gone at its end)
    .veilset-release.json                       MARKER_NAME: marks the folder as a veilset release (its identity)
    .veilset-lock.json                          LOCK_NAME: who holds the writer lock (gone when the writer ends)

Formats name their own folder and suffix (``release.registry``); the paths are spelled here only.

``GGGGGG`` is the *generation* of a shard: the release number that wrote its files (a build writes every shard
at its new release number, a takedown the shards it rewrites at its own). Files are never overwritten in place:
a writer adds files under new names, renames ``manifest.json`` over the old one (the commit), then removes what
the old release listed and the new one does not. A kill at any instant leaves the old release or the new one
whole. Generation 0 (no ``.rGGGGGG``) names the files of releases written before generations existed.
"""
from __future__ import annotations

import re

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
BUILD_JOURNAL = f"{STAGING}/build.json"
TAKEDOWN_JOURNAL = f"{TAKEDOWN_DIR}/journal.json"
MARKER_NAME = ".veilset-release.json"
LOCK_NAME = ".veilset-lock.json"


_GENERATION = re.compile(r"\.r(\d{6})(?=[./]|$)")
_SHARD_NAME = re.compile(r"^(shard-\d{5}-of-\d{5})(\.r\d{6})?(.*)$")


def generation_tag(generation: int) -> str:
    """``.r000002`` for generation 2; generation 0 (files written before generations existed): no tag."""
    if not 0 <= generation <= 999_999:
        raise ValueError(f"generation must be in [0, 999999], got {generation}")
    return f".r{generation:06d}" if generation else ""


def generation_of(rel: str) -> int:
    """The generation a release path names (``parquet/shard-00003-of-00016.r000002.parquet`` -> 2; 0: none)."""
    found = _GENERATION.findall(rel)
    return int(found[-1]) if found else 0


def shard_stem(shard: int, num_shards: int, generation: int = 0) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}{generation_tag(generation)}"


def shard_file(directory: str, suffix: str, shard: int, num_shards: int, generation: int = 0) -> str:
    """``parquet/shard-00003-of-00016.r000002.parquet`` for directory ``parquet``, suffix ``.parquet``, shard 3
    of 16, generation 2."""
    return f"{directory}/{shard_stem(shard, num_shards, generation)}{suffix}"


def with_generation(rel: str, generation: int) -> str:
    """The same shard file under another generation (``...shard-00003-of-00016.r000001.x`` -> ``.r000002``)."""
    folder, _, name = rel.rpartition("/")
    found = _SHARD_NAME.match(name)
    if found is None:
        raise ValueError(f"not a shard file: {rel!r}")
    new = f"{found.group(1)}{generation_tag(generation)}{found.group(3)}"
    return f"{folder}/{new}" if folder else new


_OWN_NAMES = (
    re.compile(r"^[a-z0-9_]+/shard-\d{5}-of-\d{5}\.r\d{6}\.[a-z0-9.]+$"),  # shard files of every format
    re.compile(rf"^{IMAGES_DIR}/\d{{5}}\.r\d{{6}}/sa_[0-9a-f]{{32}}\{JPEG_SUFFIX}$"),  # per-image JPEGs
    re.compile(r"^rejects\.r\d{6}\.jsonl$"),
    re.compile(r"^removed-windows\.r\d{6}\.idx$"),
)


def is_generation_file(rel: str) -> bool:
    """``rel`` has the exact name of a file a veilset writer writes under a generation (what a writer may
    remove when no release lists it)."""
    return any(p.match(rel) for p in _OWN_NAMES)


def is_scratch(rel: str) -> bool:
    """A writer's work file: the build's staging, a takedown's stage and journal, the writer lock."""
    return rel.split("/", 1)[0] in (STAGING, TAKEDOWN_DIR) or rel == LOCK_NAME


def rejects_name(generation: int) -> str:
    """The build's rejects file (``rejects.r000002.jsonl``); generation 0: ``rejects.jsonl``."""
    stem, suffix = REJECTS_NAME.rsplit(".", 1)
    return f"{stem}{generation_tag(generation)}.{suffix}"


def windows_name(generation: int) -> str:
    """The crop windows of every image taken down (``removed-windows.r000003.idx``, a
    ``fingerprint.NearDuplicateIndex`` file): written by the takedown that adds to it, carried by later builds."""
    return f"removed-windows{generation_tag(generation)}.idx"


def shard_number(rel: str) -> int:
    """The shard of a shard file path (``.../shard-00003-of-00016.x`` -> 3)."""
    return int(rel.rsplit("/", 1)[-1].split("-")[1])


def index_path(shard: int, num_shards: int, generation: int = 0) -> str:
    return shard_file(INDEX_DIR, INDEX_SUFFIX, shard, num_shards, generation)


def jpeg_name(image_id: str) -> str:
    """Name of an image's JPEG inside a shard (Parquet ``image.path``, tar member, file under images/)."""
    return f"{image_id}{JPEG_SUFFIX}"


def image_dir(shard: int, generation: int = 0) -> str:
    return f"{IMAGES_DIR}/{shard:05d}{generation_tag(generation)}"


def image_path(image_id: str, shard: int, generation: int = 0) -> str:
    """Path of a published per-image JPEG (the COCO ``file_name``), e.g. ``images/00003.r000002/sa_<id>.jpg``."""
    return f"{image_dir(shard, generation)}/{jpeg_name(image_id)}"


def image_id_of_name(name: str) -> str:
    """The image ID a JPEG's path or member name claims (``images/00003/sa_x.jpg``, ``shard.tar:sa_x.jpg``)."""
    stem = name.rsplit("/", 1)[-1].split(":")[-1]
    return stem[: -len(JPEG_SUFFIX)] if stem.endswith(JPEG_SUFFIX) else stem
