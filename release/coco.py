"""COCO shards (``coco/shard-SSSSS-of-NNNNN.json``): images + RLE annotations; the JPEGs themselves are the
``images`` format's files, named by each image's ``file_name`` (relative to the release root)."""
from __future__ import annotations

import json
from typing import Any, Iterator, Sequence

from veilset.detectors.base import Detection
from veilset.release import ids, index, layout
from veilset.release.canonical import dumps_compact
from veilset.release.format import Fetch, FormatError, ShardFormat, ShardKey
from veilset.release.records import ImageRecord, PublishedImage
from veilset.segmentation.base import MaskAnnotation

CATEGORY = {"id": 1, "name": "object", "supercategory": "object"}


def _image_entry(im: PublishedImage, key: ShardKey) -> dict[str, Any]:
    return {"id": ids.int_id(im.image_id), "image_id": im.image_id,
            "file_name": layout.image_path(im.image_id, key.shard, key.generation),
            "width": im.width, "height": im.height, "sha256": im.sha256,
            "detections": [d.to_dict() for d in im.detections], "anonymization": im.anonymization}


def coco_dict(images: Sequence[PublishedImage], key: ShardKey) -> dict[str, Any]:
    coco_images, annotations = [], []
    for im in images:
        coco_images.append(_image_entry(im, key))
        for k, m in enumerate(im.masks):
            ann = m.to_sa1b(ids.annotation_id(im.image_id, k))
            ann.update({"image_id": ids.int_id(im.image_id), "category_id": CATEGORY["id"], "iscrowd": 0})
            annotations.append(ann)
    return {
        "info": {"description": "veilset release shard", "shard": key.shard, "version": "1.0"},
        "licenses": [],
        "categories": [CATEGORY],
        "images": coco_images,
        "annotations": annotations,
    }


def parse(data: bytes) -> dict[str, Any]:
    """A COCO document, checked only for what every reader needs (an ``images`` list)."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise FormatError("not a COCO document (no images list)")
    return doc


def annotations_by_image(doc: dict[str, Any]) -> dict[Any, list[dict[str, Any]]]:
    """COCO integer image id -> its annotations, in file order."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for ann in doc.get("annotations", []):
        out.setdefault(ann.get("image_id"), []).append(ann)
    return out


def in_mask_order(image_id: str, anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An image's annotations in mask order (k of ``ids.annotation_id(image_id, k)``; unknown ids last, in file
    order)."""
    k_of = {ids.annotation_id(image_id, k): k for k in range(len(anns))}
    return sorted(anns, key=lambda a: k_of.get(a["id"], len(anns)))


class CocoFormat(ShardFormat):
    name = "coco"
    directory = "coco"
    suffix = ".json"
    self_contained = False  # content_sha256 comes from the index, the JPEGs from images/
    implies = ("images",)

    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        return {self.path(key): dumps_compact(coco_dict(images, key))}

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        doc = parse(fetch(self.path(key)))
        by_image = annotations_by_image(doc)
        content = {r["image_id"]: r["content_sha256"] for r in index.parse(fetch(index.path(key)))}
        return [PublishedImage(
            image_id=img["image_id"], content_sha256=content[img["image_id"]], width=img["width"],
            height=img["height"], jpeg=fetch(img["file_name"]), sha256=img["sha256"],
            detections=tuple(Detection.from_dict(d) for d in img["detections"]), anonymization=img["anonymization"],
            masks=tuple(MaskAnnotation.from_sa1b(a)
                        for a in in_mask_order(img["image_id"], by_image.get(img["id"], []))))
            for img in doc["images"]]


    def count(self, data: bytes) -> int:
        return len(parse(data)["images"])

    def records(self, rel: str, data: bytes) -> Iterator[ImageRecord]:
        doc = parse(data)
        by_image = annotations_by_image(doc)
        for img in doc["images"]:
            dets = img.get("detections")
            yield ImageRecord(img.get("image_id"), rel, img.get("width"), img.get("height"), img.get("sha256"), None,
                              tuple(dets) if dets is not None else None, img.get("anonymization"),
                              tuple(by_image.get(img.get("id"), ())))


FORMAT = CocoFormat()
