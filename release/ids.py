"""Deterministic identities: image IDs from content, shard numbers from IDs.

Pure functions, no Beam. Every other module derives IDs and shards from here only (paths: ``layout``).
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


def int_id(image_id: str) -> int:
    """The ID's first 48 bits as an integer: the shard key, and the COCO integer image id."""
    return int(image_id[len(ID_PREFIX) : len(ID_PREFIX) + 12], 16)


def shard_of(image_id: str, num_shards: int) -> int:
    """Shard number of an image: a pure function of its ID, so a takedown touches exactly one shard."""
    if not is_valid_image_id(image_id):
        raise ValueError(f"not a valid image ID: {image_id!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return int_id(image_id) % num_shards


ANNOTATIONS_PER_IMAGE = 10_000  # mask/annotation ids are int_id(image_id) * 10000 + k


def annotation_id(image_id: str, k: int) -> int:
    """ID of an image's k-th mask (COCO annotation id, SA-1B annotation id, Parquet mask id)."""
    if k >= ANNOTATIONS_PER_IMAGE:
        raise ValueError(f"{image_id}: more than {ANNOTATIONS_PER_IMAGE} masks")
    return int_id(image_id) * ANNOTATIONS_PER_IMAGE + k
