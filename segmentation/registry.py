"""Spec -> mask generator. ``build_mask_generator("felzenszwalb:scales=100,300")``, ``"none"`` -> ``None``.

Spec grammar: see ``segmentation.spec``. Backends import their heavy dependencies (torch, segment_anything)
inside their builder, so importing this module is cheap and never fails.
"""
from __future__ import annotations

import importlib
from typing import Callable

from veilset.segmentation.base import MaskGenerator
from veilset.segmentation.spec import MaskSpec

NONE = "none"

# name -> (module, builder function, one-line usage). Builders take (positional: str, options: dict[str, str]).
BACKENDS: dict[str, tuple[str, str, str]] = {
    "felzenszwalb": ("veilset.segmentation.felzenszwalb", "build",
                     "felzenszwalb[:scales=100,300,1000,sigma=0.8,...] (offline, no model)"),
    "sam": ("veilset.segmentation.sam", "build",
            "sam:vit_h|vit_l|vit_b:CHECKPOINT[:preset=sa1b|default,device=cuda,key=value,...]"),
    "sam2": ("veilset.segmentation.sam", "build_sam2",
             "sam2:CONFIG:CHECKPOINT[:key=value,...] (needs the sam2 package)"),
}


def available() -> list[str]:
    """Registered generator names (plus ``none``)."""
    return sorted(BACKENDS) + [NONE]


def usage() -> str:
    return "; ".join(v[2] for _, v in sorted(BACKENDS.items())) + "; none"


def _builder(name: str) -> Callable[[str, dict[str, str]], MaskGenerator]:
    module, func, _ = BACKENDS[name]
    return getattr(importlib.import_module(module), func)


def build_mask_generator(spec: str | MaskSpec) -> MaskGenerator | None:
    """Build a mask generator from its spec; ``"none"`` gives ``None`` (masks disabled)."""
    parsed = spec if isinstance(spec, MaskSpec) else MaskSpec.parse(spec)
    if parsed.name == NONE:
        if parsed.positional or parsed.options:
            raise ValueError(f"mask generator 'none' takes no arguments, got {str(parsed)!r}")
        return None
    if parsed.name not in BACKENDS:
        raise ValueError(f"unknown mask generator {parsed.name!r}; available: {', '.join(available())} "
                         f"({usage()})")
    return _builder(parsed.name)(parsed.positional, parsed.option_dict())
