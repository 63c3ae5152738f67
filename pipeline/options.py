"""Build options: one frozen dataclass, validated up front (the bad value is in the message)."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from veilset.pipeline.anonymize import DEFAULT_MARGIN, DEFAULT_METHOD, METHODS
from veilset.pipeline.decode import DEFAULT_MAX_PIXELS, DEFAULT_MAX_SHORT_SIDE
from veilset.pipeline.encode import DEFAULT_QUALITY
from veilset.release.manifest import NEAR_DUPLICATE_MODES, PUBLISH_ONE
from veilset.release import storage
from veilset.release.registry import DEFAULT_FORMATS, validate_formats

from veilset.detectors.registry import DEFAULT_FACE as DEFAULT_FACE_DETECTOR  # noqa: E402  (single source of truth)
from veilset.detectors.registry import DEFAULT_PLATE as DEFAULT_PLATE_DETECTOR  # noqa: E402
DEFAULT_MASKS = "felzenszwalb"
IMAGES_PER_SHARD = 1000  # --shards default: ceil(inputs / 1000), as SA-1B's ~11k images per tar, smaller
MAX_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class Blocklist:
    """What a takedown removed, never to be published again (``DropBlocked``). The front door reads it from the
    ledger (``veilset.api``) and hands it to ``build`` as data: the pipeline never imports the takedown room."""

    image_ids: frozenset[str] = frozenset()
    content_hashes: frozenset[str] = frozenset()  # source and published sha256 hex of removed images
    # fingerprints of removed images (``release.fingerprint``): (what it is, e.g. the removed image ID; PDQ hex),
    # whose near-duplicates are blocked, and the published pixels' sha256
    pdq: tuple[tuple[str, str], ...] = ()
    pixel_hashes: frozenset[str] = frozenset()
    # (removed image ID, the PDQ hashes of its crop windows, 32 bytes each: ``fingerprint.window_hashes``)
    windows: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class BuildOptions:
    inputs: tuple[str, ...]
    output: str
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    shards: int | None = None  # None: ceil(len(inputs) / IMAGES_PER_SHARD)
    formats: tuple[str, ...] = DEFAULT_FORMATS
    face_detector: str = DEFAULT_FACE_DETECTOR
    plate_detector: str = DEFAULT_PLATE_DETECTOR
    masks: str = DEFAULT_MASKS
    max_short_side: int | None = DEFAULT_MAX_SHORT_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS
    draft_decode: bool = True  # JPEGs downscaled >= 2x decode at reduced DCT scale (~2.5x faster, same shape)
    max_file_bytes: int = MAX_FILE_BYTES
    anonymize_method: str = DEFAULT_METHOD
    margin: float = DEFAULT_MARGIN
    jpeg_quality: int = DEFAULT_QUALITY
    device: str | None = None
    ledger: str | None = None
    follow_symlinks: bool = False  # links out of the input folders are rejects unless set (pipeline.ingest)
    near_duplicates: str = PUBLISH_ONE  # near-copies among the inputs: publish-one | publish-all (near_duplicates)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise ValueError("no inputs given")
        if not self.output:
            raise ValueError("--output is required")
        if not storage.is_remote(self.output):  # local: absolute, so SDK workers (other cwd) write here
            object.__setattr__(self, "output", os.path.abspath(self.output))
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.shards is not None and not 1 <= self.shards <= 99_999:
            raise ValueError(f"--shards must be in 1..99999, got {self.shards}")
        object.__setattr__(self, "formats", validate_formats(self.formats))
        if self.max_short_side is not None and self.max_short_side < 1:
            raise ValueError(f"--max-short-side must be >= 1 (or 0 to disable), got {self.max_short_side}")
        if self.max_pixels < 1:
            raise ValueError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.anonymize_method not in METHODS:
            raise ValueError(f"--anonymize: unknown method {self.anonymize_method!r}; choose from {', '.join(METHODS)}")
        if not 0.0 <= self.margin <= 2.0:
            raise ValueError(f"--margin must be in [0, 2], got {self.margin}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.near_duplicates not in NEAR_DUPLICATE_MODES:
            raise ValueError(f"--near-duplicates: unknown mode {self.near_duplicates!r}; choose from "
                             f"{', '.join(NEAR_DUPLICATE_MODES)}")

    def num_shards(self, num_inputs: int) -> int:
        return self.shards or max(1, math.ceil(num_inputs / IMAGES_PER_SHARD))

    def to_config(self) -> dict[str, Any]:
        """The JSON-able config recorded in the manifest (inputs are not: they may name people)."""
        cfg = asdict(self)
        cfg.pop("inputs")
        cfg.pop("output")
        cfg["formats"] = list(self.formats)
        if self.ledger is not None and "://" not in self.ledger:  # the file's name, not a path of the build machine
            cfg["ledger"] = os.path.basename(self.ledger)
        return cfg
