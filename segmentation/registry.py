"""The mask generators: a ``veilset.plugins.Registry``. ``build_mask_generator("felzenszwalb:scales=100,300")``,
``"none"`` -> ``None``.

Spec grammar: see ``segmentation.spec``. Built-in backends declare a ``Plugin`` next to their builder
(``segmentation/felzenszwalb.py``: ``PLUGIN``); other distributions add theirs under the entry-point group
``veilset.masks``. Backends import their heavy dependencies (torch, segment_anything) inside their builder, so
listing them is cheap and never fails.
"""
from __future__ import annotations

from veilset.plugins import Plugin, Registry
from veilset.segmentation.base import MaskGenerator
from veilset.segmentation.spec import MaskSpec

KIND = "mask generator"
GROUP = "veilset.masks"
NONE = "none"

NONE_PLUGIN = Plugin(KIND, NONE, builder=lambda: None, summary="no masks")

MASKS = Registry(KIND, GROUP, {
    "felzenszwalb": "veilset.segmentation.felzenszwalb:PLUGIN",
    "sam": "veilset.segmentation.sam:PLUGIN",
    "sam2": "veilset.segmentation.sam2_backend:PLUGIN",
    NONE: "veilset.segmentation.registry:NONE_PLUGIN",
})


def available() -> list[str]:
    """Registered generator names (``none`` included)."""
    return MASKS.names()


def usage() -> str:
    """One usage line per generator that loads (``sam:MODEL_TYPE:CHECKPOINT[:key=value,...]; ...``)."""
    return "; ".join(p.usage() for p in MASKS.plugins())


def build_mask_generator(spec: str | MaskSpec) -> MaskGenerator | None:
    """Build a mask generator from its spec; ``"none"`` gives ``None`` (masks disabled)."""
    parsed = spec if isinstance(spec, MaskSpec) else MaskSpec.parse(spec)
    if parsed.name == NONE and (parsed.positional or parsed.options):
        raise ValueError(f"mask generator 'none' takes no arguments, got {str(parsed)!r}")
    if parsed.name not in MASKS.names():
        raise ValueError(f"unknown mask generator {parsed.name!r}; available: {', '.join(available())} "
                         f"({usage()})")
    return MASKS.build(parsed.name, parsed.option_dict(), parsed.positional)
