"""The detectors: a ``veilset.plugins.Registry``. ``build_detector("centerface:threshold=0.3")``.

Built-in backends declare a ``Plugin`` next to their constructor (``detectors/centerface.py``: ``PLUGIN``);
other distributions add theirs under the entry-point group ``veilset.detectors``. Backends import their heavy
dependencies (onnxruntime, torch) inside the builder, so listing them is cheap and never fails.
"""
from __future__ import annotations

from veilset.detectors.base import Detector, DetectorSpec
from veilset.plugins import Plugin, Registry

KIND = "detector"
GROUP = "veilset.detectors"
NONE = "none"

# The default detectors (``veilset build`` and ``veilset eval`` use these when no --detector is given).
DEFAULT_FACE = "centerface"
DEFAULT_PLATE = "plates"

NONE_PLUGIN = Plugin(KIND, NONE, builder=lambda: None,
                     summary="no detection: the images are published without anonymizing that label")

DETECTORS = Registry(KIND, GROUP, {
    "centerface": "veilset.detectors.centerface:PLUGIN",
    "plates": "veilset.detectors.plates:PLATES_PLUGIN",
    "clpdet": "veilset.detectors.plates:CLPDET_PLUGIN",
    "pptext": "veilset.detectors.plates:PPTEXT_PLUGIN",
    "retinaface": "veilset.detectors.retinaface:PLUGIN",
    "egoblur_face": "veilset.detectors.egoblur:FACE_PLUGIN",
    "egoblur_plate": "veilset.detectors.egoblur:PLATE_PLUGIN",
    NONE: "veilset.detectors.registry:NONE_PLUGIN",
})


def available() -> list[str]:
    """Every registered detector name (``none`` included)."""
    return DETECTORS.names()


def names_for(label: str) -> list[str]:
    """The detectors of one label (``face``, ``license_plate``) that load, then ``none``."""
    return [p.name for p in DETECTORS.plugins() if label in p.tags] + [NONE]


def build_detector(spec: str | DetectorSpec) -> Detector | None:
    """Build a detector from ``NAME[:key=value,...]``; ``"none"`` gives ``None`` (detection disabled)."""
    parsed = spec if isinstance(spec, DetectorSpec) else DetectorSpec.parse(spec)
    return DETECTORS.build(parsed.name, dict(parsed.kwargs))
