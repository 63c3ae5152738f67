"""A toy output format in one module: JSON lines, one image per line, JPEG bytes in base64.

Everything a format needs is here (``release.format.ShardFormat``); registering it is one line,
``registry.register(toy_jsonl.FORMAT)``. Nothing else in the repository names it, yet ``veilset build --formats
jsonl`` writes it, ``veilset takedown apply`` rewrites it and ``veilset audit`` checks it (tests/release/
test_toy_format.py).
"""
from __future__ import annotations

import base64
import json
from typing import Iterator, Sequence

from veilset.detectors.base import Detection
from veilset.release.canonical import dumps_compact
from veilset.release.format import Fetch, FormatError, ShardFormat, ShardKey
from veilset.release.ids import annotation_id
from veilset.release.records import ImageCopy, ImageRecord, PublishedImage
from veilset.segmentation.base import MaskAnnotation


def _line(im: PublishedImage) -> bytes:
    return dumps_compact({
        "image_id": im.image_id, "width": im.width, "height": im.height, "sha256": im.sha256,
        "content_sha256": im.content_sha256, "jpeg": base64.b64encode(im.jpeg).decode("ascii"),
        "detections": [d.to_dict() for d in im.detections], "anonymization": im.anonymization,
        "masks": [m.to_sa1b(annotation_id(im.image_id, k)) for k, m in enumerate(im.masks)],
    })


def _rows(data: bytes) -> list[dict]:
    try:
        return [json.loads(line) for line in data.splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"not JSON lines: {err}") from None


class JsonLinesFormat(ShardFormat):
    name = "jsonl"
    directory = "jsonl"
    suffix = ".jsonl"
    holds_jpegs = True

    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        return {self.path(key): b"".join(_line(im) + b"\n" for im in images)}

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        return [PublishedImage(
            image_id=r["image_id"], content_sha256=r["content_sha256"], width=r["width"], height=r["height"],
            jpeg=base64.b64decode(r["jpeg"]), sha256=r["sha256"],
            detections=tuple(Detection.from_dict(d) for d in r["detections"]), anonymization=r["anonymization"],
            masks=tuple(MaskAnnotation.from_sa1b(m) for m in r["masks"])) for r in _rows(fetch(self.path(key)))]

    def count(self, data: bytes) -> int:
        return len(_rows(data))

    def records(self, rel: str, data: bytes) -> Iterator[ImageRecord]:
        for r in _rows(data):
            yield ImageRecord(r["image_id"], rel, r["width"], r["height"], r["sha256"], r["content_sha256"],
                              tuple(r["detections"]), r["anonymization"], tuple(r["masks"]))

    def copies(self, rel: str, data: bytes, image_ids: frozenset[str] | None = None) -> Iterator[ImageCopy]:
        for r in _rows(data):
            if image_ids is None or r["image_id"] in image_ids:
                yield ImageCopy(r["image_id"], rel, base64.b64decode(r["jpeg"]))


FORMAT = JsonLinesFormat()
