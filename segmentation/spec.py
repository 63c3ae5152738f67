"""Parsing of mask-generator specs: ``NAME[:POSITIONAL...][:key=value,...]`` (pure Python, no Beam).

Examples: ``felzenszwalb``, ``felzenszwalb:scales=100,300``, ``sam:vit_b:/ckpt/sam_vit_b.pth``,
``sam:vit_b:/ckpt/sam_vit_b.pth:preset=sa1b,points_per_side=16``, ``sam2:CONFIG.yaml:CKPT.pt``.

The options segment is the last ``:``-separated segment when it starts with ``identifier=``; everything between
the name and the options is the positional part (paths may themselves contain ``:``, e.g. ``gs://...``).
Inside the options, an item without ``=`` continues the previous value, so ``scales=100,300,sigma=0.8`` gives
``{"scales": "100,300", "sigma": "0.8"}``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPTIONS_START = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class MaskSpec:
    name: str
    positional: str = ""
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str) -> "MaskSpec":
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"empty mask-generator spec: {text!r}")
        text = text.strip()
        name, _, rest = text.partition(":")
        options: list[tuple[str, str]] = []
        if rest:
            head, sep, last = rest.rpartition(":")
            if _OPTIONS_START.match(last):
                options = _parse_options(last, text)
                rest = head if sep else ""
        return cls(name=name.strip(), positional=rest, options=tuple(options))

    def option_dict(self) -> dict[str, str]:
        return dict(self.options)

    def __str__(self) -> str:
        out = self.name
        if self.positional:
            out += ":" + self.positional
        if self.options:
            out += ":" + ",".join(f"{k}={v}" for k, v in self.options)
        return out


def _parse_options(segment: str, whole: str) -> list[tuple[str, str]]:
    pairs: list[list[str]] = []
    for item in segment.split(","):
        key, eq, value = item.partition("=")
        if eq and _OPTIONS_START.match(item.strip()):
            pairs.append([key.strip(), value.strip()])
        elif pairs:  # continuation of a list value, e.g. scales=100,300
            pairs[-1][1] += "," + item.strip()
        else:
            raise ValueError(f"bad mask-generator option {item!r} in {whole!r}; expected key=value")
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"mask-generator option {key!r} given twice in {whole!r}")
        seen.add(key)
    return [(k, v) for k, v in pairs]
