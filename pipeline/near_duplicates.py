"""Near-duplicates among a build's own inputs: two files of one photo (re-encoded, resized, turned, framed) are one
image. Pure functions on fingerprints; the Beam steps around them live in ``pipeline.graph``.

Every published image gets a ``NearKey`` when it is staged: the PDQ hashes it is found by (``index_hashes``: its
own and, with flat margins, its trimmed picture's) and those it looks others up with (``query_hashes``: its 8
rotations/mirrorings and its trimmed pictures, taken on a ``QUERY_SIDE`` copy, as a takedown query is, and its
own two full-size hashes). ``group``
then walks all keys once, unframed pictures first (a copy with added margins is not preferred for them), then the
largest: an image within ``fingerprint.MATCH_DISTANCE`` bits of an image
already kept is a near-duplicate of it, otherwise it is kept. The walk's order is fixed (unframed, most pixels, then
source name), so the grouping, and which copy is published, is the same on every run and every runner.

Only pictures PDQ can tell apart take part (quality >= ``fingerprint.MIN_QUALITY``): a flat picture's hash says
little, and two different flat pictures must both be published. The threshold is the takedowns' own, chosen on
``benchmarks/near_duplicates.py`` (0 false matches over 1.56 M pairs of distinct photos): README "Near-duplicates".
Crops are found as far as whole-image PDQ finds them (a takedown also searches its crop windows, ~1.5 s a
photo: too dear for every input).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from veilset.release import fingerprint

QUERY_SIDE = 512  # px: the long side the query hashes are taken at (PDQ itself works at 64 x 64)


@dataclass(frozen=True)
class NearKey:
    """What grouping needs to know of one staged image (small: shuffled and collected in one list)."""

    image_id: str
    source: str
    framed: bool  # the picture has flat margins (a frame, letterbox bars): a copy without them is kept first
    pixels: int  # width * height of the published image: then the largest copy is kept
    quality: int  # PDQ quality of the published pixels
    index_hashes: tuple[str, ...]  # hex: found by these
    query_hashes: tuple[str, ...]  # hex: looks others up with these


@dataclass(frozen=True)
class NearDuplicate:
    """``image_id`` is a copy of ``of`` (an image that is published), ``distance`` bits apart."""

    image_id: str
    source: str
    of: str
    distance: int


def near_key(image_id: str, source: str, pixels: np.ndarray, fp: fingerprint.Fingerprint) -> NearKey:
    """The key of a published image from its decoded pixels and their ``fingerprint``."""
    query, _ = fingerprint.query_hashes(fingerprint.shrink_to(fingerprint.as_rgb(pixels), QUERY_SIDE), dihedral=True)
    own = fp.index_hashes()  # taken at full size: a screenshot's margins trim more exactly there
    query += [h for h in own if h not in query]
    return NearKey(image_id, source, fp.pdq_trimmed is not None, fp.width * fp.height, fp.quality,
                   tuple(h.hex() for h in own), tuple(h.hex() for h in query))


def _order(key: NearKey) -> tuple[bool, int, str, str]:
    return key.framed, -key.pixels, key.source, key.image_id


def group(keys: Iterable[NearKey], max_distance: int = fingerprint.MATCH_DISTANCE) -> dict[str, NearDuplicate]:
    """{image ID: NearDuplicate} for every image that is a near-duplicate of one kept before it (unframed first,
    then largest, then by source name); images not in the result are kept. Deterministic in the set of keys."""
    kept = fingerprint.NearDuplicateIndex()
    found: dict[str, NearDuplicate] = {}
    for key in sorted(keys, key=_order):
        if key.quality < fingerprint.MIN_QUALITY:
            continue
        matches = kept.query(list(key.query_hashes), max_distance) if len(kept) else []
        if matches:
            found[key.image_id] = NearDuplicate(key.image_id, key.source, matches[0].image_id, matches[0].distance)
        else:
            kept.add_many([key.image_id] * len(key.index_hashes), list(key.index_hashes))
    return found
