"""Records that flow between pipeline stages (frozen dataclasses; never tuples). What the stages hand to the
release writers (``PublishedImage``) is the format's: ``veilset.release.records``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veilset.detectors.base import Detection


@dataclass(frozen=True)
class Reject:
    """An input that a stage refused. Written to ``rejects.jsonl``; counted by ``stage:reason``."""

    source: str
    stage: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "stage": self.stage, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """Orientation-corrected 8-bit RGB pixels after the resize policy (what gets published)."""

    image_id: str
    source: str
    content_sha256: str
    pixels: np.ndarray = field(repr=False)  # H x W x 3 uint8 RGB, C-contiguous
    # The source JPEG minus its metadata segments when it decodes to exactly ``pixels`` (clean baseline, no
    # rotation, no resize): published as is when nothing needs anonymizing, saving a lossy re-encode.
    lossless_jpeg: bytes | None = field(default=None, repr=False)

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])


@dataclass(frozen=True, eq=False)
class DetectedImage:
    image: DecodedImage
    detections: tuple[Detection, ...]


@dataclass(frozen=True, eq=False)
class AnonymizedImage:
    image_id: str
    source: str
    content_sha256: str
    pixels: np.ndarray = field(repr=False)
    detections: tuple[Detection, ...]
    anonymization: dict[str, Any]  # method, margin, regions, detector identities
    lossless_jpeg: bytes | None = field(default=None, repr=False)  # see DecodedImage
