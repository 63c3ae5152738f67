"""Records of the release format (frozen dataclasses; never tuples).

``PublishedImage`` is what a format writes and reads back; ``ShardFile`` is one written shard file as the
manifest lists it. ``ImageRecord`` and ``ImageCopy`` are the lenient, read-only views the audit gets from a
format (what one file says about an image, and the bytes of one published copy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from veilset.detectors.base import Detection
from veilset.segmentation.base import MaskAnnotation


@dataclass(frozen=True, eq=False)
class PublishedImage:
    """Everything a shard writer needs for one image: final JPEG bytes and annotations."""

    image_id: str
    content_sha256: str
    width: int
    height: int
    jpeg: bytes = field(repr=False)
    sha256: str
    detections: tuple[Detection, ...]
    anonymization: dict[str, Any]
    masks: tuple[MaskAnnotation, ...]
    # fingerprints of the published JPEG's decoded pixels (``release.fingerprint``): PDQ as 64 hex digits, and the
    # pixels' sha256; "" where unknown (a release built before they were recorded)
    pdq: str = ""
    pixels_sha256: str = ""
    # ``--near-duplicates publish-all``: the published image this one is a near-copy of (``pipeline.near_duplicates``)
    near_duplicate_of: str = ""


@dataclass(frozen=True)
class ShardFile:
    """One written shard file, as listed in the manifest (``shards`` or ``index``)."""

    format: str
    shard: int
    path: str  # relative to the release root
    sha256: str
    images: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "shard": self.shard, "path": self.path, "sha256": self.sha256,
                "images": self.images}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ShardFile":
        return cls(str(d["format"]), int(d["shard"]), str(d["path"]), str(d["sha256"]), int(d["images"]))


@dataclass(frozen=True)
class ImageRecord:
    """What one format says about one published image (``file`` is where it says it); fields it lacks are None."""

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
