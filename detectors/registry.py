"""The detectors: a ``veilset.plugins.Registry``. ``build_detector("centerface:threshold=0.3")``.

Built-in backends declare a ``Plugin`` next to their constructor (``detectors/centerface.py``: ``PLUGIN``);
other distributions add theirs under the entry-point group ``veilset.detectors``. Backends import their heavy
dependencies (onnxruntime, torch) inside the builder, so listing them is cheap and never fails.
"""
from __future__ import annotations

import os

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


def threads_per_worker(workers: int) -> int:
    """Inference threads for each of ``workers`` processes on this machine: its cores shared out (N workers x N
    threads = the cores; 2 workers x 2 threads on 2 cores made 2 workers slower than 1)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def with_threads(spec: str, threads: int | None) -> str:
    """``spec`` with ``threads=N`` added unless the user set it or the detector takes no ``threads`` option."""
    parsed = DetectorSpec.parse(spec)
    if threads is None or any(k == "threads" for k, _ in parsed.kwargs) \
            or "threads" not in DETECTORS.get(parsed.name).args.names:
        return spec
    return str(DetectorSpec(parsed.name, parsed.kwargs + (("threads", str(threads)),)))
