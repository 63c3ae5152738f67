"""SA-1B tars (``sa1b/shard-SSSSS-of-NNNNN.tar``): members ``sa_<id>.jpg`` + ``sa_<id>.json`` (SA-1B per-image
JSON) per image, deterministic USTAR headers, readable by webdataset."""
from __future__ import annotations

import io
import json
import tarfile
from typing import Any, Iterator, Sequence

from veilset.detectors.base import Detection
from veilset.release import ids, layout
from veilset.release.canonical import dumps_compact
from veilset.release.format import Fetch, FormatError, ShardFormat, ShardKey
from veilset.release.records import ImageCopy, ImageRecord, PublishedImage
from veilset.segmentation.base import MaskAnnotation


def sa1b_json(im: PublishedImage) -> dict[str, Any]:
    """SA-1B's per-image JSON: ``image.image_id`` is the integer id (as in SA-1B's files), the release's string
    ID is ``image.veilset_id``."""
    return {
        "image": {"image_id": ids.int_id(im.image_id), "veilset_id": im.image_id, "width": im.width,
                  "height": im.height, "file_name": layout.jpeg_name(im.image_id)},
        "annotations": [m.to_sa1b(ids.annotation_id(im.image_id, k)) for k, m in enumerate(im.masks)],
        "detections": [d.to_dict() for d in im.detections],
        "anonymization": im.anonymization,
        "sha256": im.sha256,
        "content_sha256": im.content_sha256,
    }


def tar_bytes(images: Sequence[PublishedImage]) -> bytes:
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for im in images:
            for name, data in ((layout.jpeg_name(im.image_id), im.jpeg),
                               (f"{im.image_id}.json", dumps_compact(sa1b_json(im)))):
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
    return sink.getvalue()


def members(data: bytes) -> list[tuple[str, bytes]]:
    """(name, bytes) of every member, in tar order (non-files read as empty)."""
    out = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                fh = tar.extractfile(info) if info.isfile() else None
                out.append((info.name, fh.read() if fh is not None else b""))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise FormatError(f"not a readable tar: {err}") from None
    return out


def string_id(image: dict[str, Any]) -> Any:
    """The release's string ID of an SA-1B ``image`` entry: ``veilset_id``; releases written before it existed
    kept the string in ``image_id``."""
    if not isinstance(image, dict):
        return None
    return image["veilset_id"] if "veilset_id" in image else image.get("image_id")


def _published(meta: dict[str, Any], jpeg: bytes) -> PublishedImage:
    return PublishedImage(
        image_id=string_id(meta["image"]), content_sha256=meta["content_sha256"], width=meta["image"]["width"],
        height=meta["image"]["height"], jpeg=jpeg, sha256=meta["sha256"],
        detections=tuple(Detection.from_dict(d) for d in meta["detections"]), anonymization=meta["anonymization"],
        masks=tuple(MaskAnnotation.from_sa1b(a) for a in meta["annotations"]))


def _record(rel: str, data: bytes) -> ImageRecord | None:
    try:
        meta = json.loads(data)
        image = meta["image"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return None  # the integrity check reports unreadable members
    dets = meta.get("detections")
    return ImageRecord(string_id(image), rel, image.get("width"), image.get("height"), meta.get("sha256"),
                       meta.get("content_sha256"), tuple(dets) if dets is not None else None,
                       meta.get("anonymization"), tuple(meta.get("annotations") or ()))


class Sa1bFormat(ShardFormat):
    name = "sa1b"
    holds_jpegs = True
    directory = "sa1b"
    suffix = ".tar"

    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        return {self.path(key): tar_bytes(images)}

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        by_stem: dict[str, dict[str, bytes]] = {}
        for name, data in members(fetch(self.path(key))):
            stem, _, ext = name.rpartition(".")
            by_stem.setdefault(stem, {})[ext] = data
        return [_published(json.loads(by_stem[s]["json"]), by_stem[s]["jpg"]) for s in sorted(by_stem)]

    def count(self, data: bytes) -> int:
        return sum(name.endswith(layout.JPEG_SUFFIX) for name, _ in members(data))

    def records(self, rel: str, data: bytes) -> Iterator[ImageRecord]:
        for name, member in members(data):
            record = _record(f"{rel}:{name}", member) if name.endswith(".json") else None
            if record is not None:
                yield record

    def copies(self, rel: str, data: bytes, image_ids: frozenset[str] | None = None) -> Iterator[ImageCopy]:
        for name, member in members(data):
            image_id = layout.image_id_of_name(name)
            if name.endswith(layout.JPEG_SUFFIX) and (image_ids is None or image_id in image_ids):
                yield ImageCopy(image_id, f"{rel}:{name}", member)


FORMAT = Sa1bFormat()
