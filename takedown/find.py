"""``veilset takedown find``: which published images of a release are a photo someone sends in (or a copy of it).

The release's index carries each image's PDQ hash (``release.fingerprint``); for a release built before it did,
the published JPEGs are read back and hashed (slow, but the same answer). A photo is looked up with its dihedral
and border-trimmed hashes (``fingerprint.query_hashes``): matches within ``MATCH_DISTANCE`` are the same image,
those up to ``REVIEW_DISTANCE`` are for a person to look at.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from veilset.release import fingerprint, index, manifest, shards


@dataclass(frozen=True)
class Found:
    """One published image found for a photo."""

    photo: str
    image_id: str
    distance: int

    @property
    def band(self) -> str:
        return "match" if self.distance <= fingerprint.MATCH_DISTANCE else "review"

    def to_dict(self) -> dict[str, Any]:
        return {"photo": self.photo, "image_id": self.image_id, "distance": self.distance, "band": self.band}


def release_index(release_dir: str) -> fingerprint.NearDuplicateIndex:
    """Every published image's PDQ hash: from the index, or (rows without one) from its published JPEG."""
    current = manifest.read(release_dir)
    found = fingerprint.NearDuplicateIndex()
    for entry in current.index:
        rows = index.read(release_dir, entry.path)
        with_pdq = [r for r in rows if r.get("pdq")]
        found.add_many([r["image_id"] for r in with_pdq], [r["pdq"] for r in with_pdq])
        if len(with_pdq) < len(rows):
            missing = {r["image_id"] for r in rows if not r.get("pdq")}
            for im in shards.read_images(current.key(entry.shard), current.formats, shards.fetcher(release_dir)):
                if im.image_id in missing:
                    found.add(im.image_id, fingerprint.fingerprint_bytes(im.jpeg).pdq)
    return found


def find_photo(found: fingerprint.NearDuplicateIndex, photo: str, data: bytes,
               max_distance: int = fingerprint.REVIEW_DISTANCE) -> list[Found]:
    """The published images within ``max_distance`` of the photo (nearest first); ValueError if undecodable."""
    hashes, _quality = fingerprint.query_hashes(fingerprint.decode_rgb(data), dihedral=True)
    return [Found(photo, m.image_id, m.distance) for m in found.query(hashes, max_distance)]


def find_hash(found: fingerprint.NearDuplicateIndex, pdq_hex: str,
              max_distance: int = fingerprint.REVIEW_DISTANCE) -> list[Found]:
    """The published images within ``max_distance`` of a PDQ hash given as 64 hex digits."""
    return [Found(pdq_hex, m.image_id, m.distance) for m in found.query(pdq_hex, max_distance)]


def find(release_dir: str, photos: Sequence[tuple[str, bytes]]) -> list[Found]:
    """Every match of every (name, bytes) photo in the release, photo by photo."""
    found = release_index(release_dir)
    return [f for name, data in photos for f in find_photo(found, name, data)]
