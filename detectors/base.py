"""Detector interface, detection record and the name -> builder registry.

A detector is a plain Python object (no Beam): ``detect(image_rgb) -> list[Detection]`` on an
H x W x 3 uint8 RGB array, boxes in that array's pixel coordinates. ``pipeline`` wraps detectors in a
Beam ``ModelHandler`` (``detectors.handler``) so that each worker process loads one model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

FACE = "face"
LICENSE_PLATE = "license_plate"
LABELS = (FACE, LICENSE_PLATE)


@dataclass(frozen=True)
class Detection:
    """One detected region. ``box_xyxy`` is (x0, y0, x1, y1) in pixels, x1/y1 exclusive-ish floats."""

    label: str
    box_xyxy: tuple[float, float, float, float]
    score: float
    detector: str

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r}")
        if len(self.box_xyxy) != 4:
            raise ValueError(f"box_xyxy needs 4 numbers, got {self.box_xyxy!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "box_xyxy": [float(v) for v in self.box_xyxy],
                "score": float(self.score), "detector": self.detector}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Detection":
        return cls(label=d["label"], box_xyxy=tuple(float(v) for v in d["box_xyxy"]),
                   score=float(d["score"]), detector=d["detector"])


class Detector(Protocol):
    name: str  # registry name, e.g. "centerface"
    label: str  # FACE or LICENSE_PLATE

    def identity(self) -> dict[str, Any]:
        """What produced the boxes: name, version, weights file + sha256, thresholds, presets.

        Recorded in the manifest and per image; must be JSON-serialisable and deterministic.
        """

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        ...

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        ...


@dataclass(frozen=True)
class DetectorSpec:
    """A parsed ``NAME[:key=value,...]`` string, e.g. ``centerface:threshold=0.3``."""

    name: str
    kwargs: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> "DetectorSpec":
        if not text or not isinstance(text, str):
            raise ValueError(f"empty detector spec: {text!r}")
        name, _, rest = text.partition(":")
        pairs = []
        if rest:
            for item in rest.split(","):
                key, eq, value = item.partition("=")
                if not eq or not key:
                    raise ValueError(f"bad detector argument {item!r} in {text!r}; expected key=value")
                pairs.append((key.strip(), value.strip()))
        return cls(name=name.strip(), kwargs=tuple(pairs))

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.kwargs)


_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register(name: str) -> Callable[[Callable[..., Detector]], Callable[..., Detector]]:
    def deco(builder: Callable[..., Detector]) -> Callable[..., Detector]:
        _REGISTRY[name] = builder
        return builder

    return deco
