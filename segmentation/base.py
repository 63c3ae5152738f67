"""Mask-generator interface and the SA-1B annotation record.

A mask generator is a plain Python object (no Beam): ``generate(image_rgb) -> list[MaskAnnotation]`` on an
H x W x 3 uint8 RGB array (the *anonymized* image). ``pipeline`` wraps it in a Beam ``ModelHandler``
(``segmentation.handler``) so that each worker process loads one model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class MaskAnnotation:
    """Exactly SA-1B's per-annotation fields (ids are assigned by the shard writers).

    segmentation: COCO compressed RLE {"size": [h, w], "counts": str} (pycocotools.mask.encode, counts decoded
    to str). bbox_xywh: (x, y, w, h) in pixels. crop_box_xywh: (x, y, w, h) of the crop the mask came from.
    point_coords: the prompt point(s) (x, y) in image pixels.
    """

    segmentation: dict[str, Any]
    bbox_xywh: tuple[float, float, float, float]
    area: int
    predicted_iou: float
    stability_score: float
    point_coords: tuple[tuple[float, float], ...]
    crop_box_xywh: tuple[float, float, float, float]

    def to_sa1b(self, annotation_id: int) -> dict[str, Any]:
        """SA-1B JSON annotation (field names as in SA-1B: bbox and crop_box are XYWH)."""
        return {
            "id": int(annotation_id),
            "segmentation": {"size": [int(v) for v in self.segmentation["size"]],
                             "counts": str(self.segmentation["counts"])},
            "bbox": [float(v) for v in self.bbox_xywh],
            "area": int(self.area),
            "predicted_iou": float(self.predicted_iou),
            "stability_score": float(self.stability_score),
            "point_coords": [[float(x), float(y)] for x, y in self.point_coords],
            "crop_box": [float(v) for v in self.crop_box_xywh],
        }

    @classmethod
    def from_sa1b(cls, d: dict[str, Any]) -> "MaskAnnotation":
        return cls(
            segmentation={"size": list(d["segmentation"]["size"]), "counts": d["segmentation"]["counts"]},
            bbox_xywh=tuple(float(v) for v in d["bbox"]),
            area=int(d["area"]),
            predicted_iou=float(d["predicted_iou"]),
            stability_score=float(d["stability_score"]),
            point_coords=tuple((float(p[0]), float(p[1])) for p in d["point_coords"]),
            crop_box_xywh=tuple(float(v) for v in d["crop_box"]),
        )


def check_rgb(image_rgb: np.ndarray, who: str) -> np.ndarray:
    """The input as an H x W x 3 uint8 array, or a ValueError naming the generator and what it got."""
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{who}: expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
    return image


class MaskGenerator(Protocol):
    name: str  # registry name, e.g. "felzenszwalb" or "sam"

    def identity(self) -> dict[str, Any]:
        """Name, version, checkpoint + sha256, every generation setting; JSON-serialisable, deterministic."""

    def generate(self, image_rgb: np.ndarray) -> list[MaskAnnotation]:
        ...
