"""Deterministic identities: image IDs from content, shard numbers and shard names from IDs.

Pure functions, no Beam. Every other module derives IDs and shard paths from here only.
"""
from __future__ import annotations

import hashlib
import re

ID_PREFIX = "sa_"
ID_HEX_CHARS = 32  # 128 bits of sha256: collision-free at any realistic dataset size
ID_PATTERN = re.compile(rf"\b{ID_PREFIX}[0-9a-f]{{{ID_HEX_CHARS}}}\b")
_ID_FULL = re.compile(rf"{ID_PREFIX}[0-9a-f]{{{ID_HEX_CHARS}}}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_id_for(content_sha256: str) -> str:
    """Image ID of a source file whose bytes hash to ``content_sha256`` (hex)."""
    if len(content_sha256) != 64:
        raise ValueError(f"expected a 64-char sha256 hex digest, got {content_sha256!r}")
    return ID_PREFIX + content_sha256[:ID_HEX_CHARS]


def is_valid_image_id(value: str) -> bool:
    return isinstance(value, str) and _ID_FULL.fullmatch(value) is not None


def shard_of(image_id: str, num_shards: int) -> int:
    """Shard number of an image: a pure function of its ID, so a takedown touches exactly one shard."""
    if not is_valid_image_id(image_id):
        raise ValueError(f"not a valid image ID: {image_id!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return int(image_id[len(ID_PREFIX) : len(ID_PREFIX) + 12], 16) % num_shards


def shard_stem(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


FORMAT_DIRS = {"parquet": "parquet", "coco": "coco", "sa1b": "sa1b", "index": "index"}
FORMAT_SUFFIX = {"parquet": ".parquet", "coco": ".json", "sa1b": ".tar", "index": ".jsonl"}


def shard_path(fmt: str, shard: int, num_shards: int) -> str:
    """Path of a shard file relative to the release root, e.g. ``parquet/shard-00003-of-00016.parquet``."""
    if fmt not in FORMAT_DIRS:
        raise ValueError(f"unknown shard format {fmt!r}; expected one of {sorted(FORMAT_DIRS)}")
    return f"{FORMAT_DIRS[fmt]}/{shard_stem(shard, num_shards)}{FORMAT_SUFFIX[fmt]}"


def image_path(image_id: str, shard: int) -> str:
    """Path of a published per-image JPEG relative to the release root (COCO ``file_name``)."""
    return f"images/{shard:05d}/{image_id}.jpg"
