"""Deterministic identities: image IDs from content, shard numbers and integer ids from IDs.

Pure functions, no Beam. Every other module derives IDs and shards from here only (paths: ``layout``).

The integer ids (COCO image and annotation ids, SA-1B ``image_id`` and annotation ids, Parquet mask ids) are all
below 2**53, so JavaScript and every JSON tool that reads numbers as doubles keeps them exact:

- image integer ``int_id(image_id)``: the ID's first 48 bits, ``int(image_id[3:15], 16)``. It is also the shard
  key (``shard_of``), so two images with the same integer always land in the same shard.
- annotation id of an image's k-th mask (k = 0, 1, ...) ``annotation_id(image_id, k)``: the first 53 bits of
  ``sha256(f"{image_id}/{k}")``, i.e. ``int.from_bytes(digest[:8], "big") >> 11``.

Both are pure functions of the string ID (and k), stable across releases and takedowns. They are not unique by
construction: COCO needs them unique within a file (one shard), which ``clashes`` checks. Within a shard the
first image (by string ID) keeps its ids; a later image that would reuse one loses (the build rejects it as
``write:id_clash``, the shard writer refuses to write it). The string ID stays the release's key everywhere (COCO
``images[].image_id``, SA-1B ``image.veilset_id``, the Parquet and index ``image_id`` columns).
Odds: some two of N images share a 48-bit integer with probability about N**2 / 2**49 (1M images: 0.2 %, SA-1B's
11M: about 20 %, so a large build may reject an image or two); a shard of A masks reuses a 53-bit annotation id
with probability about A**2 / 2**54.
"""
from __future__ import annotations

import hashlib
import re
from typing import Iterable

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


SAFE_INT_LIMIT = 2**53  # every integer id is below this (JavaScript's Number.MAX_SAFE_INTEGER + 1)


def int_id(image_id: str) -> int:
    """The ID's first 48 bits as an integer: the shard key, the COCO image id, the SA-1B integer image_id."""
    return int(image_id[len(ID_PREFIX) : len(ID_PREFIX) + 12], 16)


def shard_of(image_id: str, num_shards: int) -> int:
    """Shard number of an image: a pure function of its ID, so a takedown touches exactly one shard."""
    if not is_valid_image_id(image_id):
        raise ValueError(f"not a valid image ID: {image_id!r}")
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return int_id(image_id) % num_shards


def annotation_id(image_id: str, k: int) -> int:
    """ID of an image's k-th mask (COCO annotation id, SA-1B annotation id, Parquet mask id): the first 53 bits
    of sha256(f"{image_id}/{k}")."""
    if not isinstance(k, int) or k < 0:
        raise ValueError(f"{image_id}: mask index must be an int >= 0, got {k!r}")
    digest = hashlib.sha256(f"{image_id}/{k}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") >> 11


def clashes(images: Iterable[tuple[str, int]]) -> dict[str, tuple[str, str]]:
    """Images of one shard whose integer ids clash: ``{image_id: (other image ID, what they share)}`` for each
    image that must stay out, e.g. ``("sa_...", "COCO image id 42")``.

    ``images``: (image ID, number of masks). In string-ID order, an image keeps its ids unless its integer image
    id or one of its annotation ids is already taken (by an earlier kept image, or by its own other masks).
    """
    taken_images: dict[int, str] = {}
    taken_anns: dict[int, str] = {}
    out: dict[str, tuple[str, str]] = {}
    for image_id, num_masks in sorted(images):
        n = int_id(image_id)
        if n in taken_images:
            out[image_id] = (taken_images[n], f"COCO image id {n}")
            continue
        mine: dict[int, str] = {}
        for k in range(num_masks):
            a = annotation_id(image_id, k)
            owner = taken_anns.get(a) or mine.get(a)
            if owner is not None:
                out[image_id] = (owner, f"annotation id {a} (its mask {k})")
                break
            mine[a] = image_id
        else:
            taken_images[n] = image_id
            taken_anns.update(mine)
    return out
