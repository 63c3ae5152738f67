"""Name -> builder registry for detectors. ``build_detector("centerface:threshold=0.3")``."""
from __future__ import annotations

import importlib

from veilset.detectors.base import _REGISTRY, Detector, DetectorSpec

# Every backend module registers its builders with ``detectors.base.register``. Backends import their heavy
# dependencies (onnxruntime, torch) inside the builder, so importing this list is cheap and never fails.
BACKEND_MODULES = ("veilset.detectors.centerface", "veilset.detectors.plates", "veilset.detectors.retinaface",
                   "veilset.detectors.egoblur")

NONE = "none"

# The default detectors (``veilset build`` and ``veilset eval`` use these when no --detector is given).
DEFAULT_FACE = "centerface"
DEFAULT_PLATE = "plates"


def _load_backends() -> None:
    for module in BACKEND_MODULES:
        importlib.import_module(module)


def available() -> list[str]:
    _load_backends()
    return sorted(_REGISTRY)


def build_detector(spec: str | DetectorSpec) -> Detector | None:
    """Build a detector from ``NAME[:key=value,...]``; ``"none"`` gives ``None`` (detection disabled)."""
    parsed = spec if isinstance(spec, DetectorSpec) else DetectorSpec.parse(spec)
    if parsed.name == NONE:
        return None
    _load_backends()
    if parsed.name not in _REGISTRY:
        raise ValueError(f"unknown detector {parsed.name!r}; available: {', '.join(sorted(_REGISTRY))}, none")
    try:
        return _REGISTRY[parsed.name](**dict(parsed.kwargs))
    except TypeError as err:  # an unknown key=value in the spec
        if "unexpected keyword argument" not in str(err):
            raise
        raise ValueError(f"detector {str(parsed)!r}: {err}") from None
