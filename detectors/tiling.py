"""Detection by resolution: on which windows of an image, at which scale, one detector pass runs.

A pass (``base.Pass``) brings each image to a network size, e.g. CenterFace's long side 1280 px. On an ordinary
photo that is a mild shrink (1500 x 1000 -> 1280 x 853: scale 0.85), but a 12000 x 1500 panorama would be searched
at 1280 x 160 (scale 0.11), where a 60-px face is 6 px. The policy here keeps the scale, not the image, fixed:

* **Ordinary photos do not change**: an image whose long side is <= ``ordinary_side`` (1500 px: an ordinary photo
  after the build's resize, which caps the short side at 1500) runs exactly as before: one pass.
* The **working scale** of a pass is the scale it gives a photo whose long side is ``reference_side``: the photos
  its recall was measured on. Faces: 1500 px (CenterFace 1280 / 1500 = 0.85: a 24-px face is 20 px there, on the
  recall plateau). Plates: 1280 px, the size of the plate dev photos (clp_det at 1.0, PP-OCR at 0.5; at the 1500-px
  scale, plate recall on the benchmark canvases fell 2-4 points). A larger image that the pass would see coarser
  than that is searched at the working scale in overlapping **tiles** of at most ``2 max_side x 1.25 max_side``
  network pixels (a whole image that fits is one tile), and again, whole or tiled, at ``ratio`` (4) x coarser
  scales until the whole image fits in one tile (a **pyramid**; each level costs 1/16 of the one below).
* **The smallest object in scope sets a floor** under the working scale of a larger image: never coarser than
  ``needs / smallest``, the scale at which the smallest object the policy promises to find (``smallest`` source px)
  measures what the detector needs (``needs`` network px). Plates: every plate >= 16 px tall; of the 8 plates of
  17-25 px that the 2:1 benchmark canvas (published 2.67x smaller) lost, clp_det at 1.0 scores none >= 0.3, at 2.0
  4 with 0.48-0.96 (its smallest prior is 24 px at stride 8): its working scale is 2.0 (32 / 16), which costs 4x
  its network pixels per megapixel of a large image. The text lines keep 1.0 (at 2.0: 4x their larger cost for 2 more
  plates of the 121 on the 2:1 canvases; README, Detection policy).
* **Hand-off**: an object whose long side measures >= ``handoff`` network pixels at the next coarser level is
  found there, at a size where the detector's recall is flat (measured for CenterFace on the dev photos: recall
  0.85-0.92 from 16 px short side up; a face's long side ``handoff`` = 40 px is ~32 px short side). Tiles of a
  level therefore overlap by 1.25 x the largest object the next level does not take (+ 2 edge bands), so every
  smaller object lies whole inside some tile, at least one edge band away from its inner borders.
* **Cut objects are dropped**: a box within ``edge`` network pixels of a tile border that is not an image border
  may be a cut object. It is dropped: the whole object lies inside a neighbouring tile (small objects) or is found
  at a coarser level (large ones). Without this, a half-face box could win the merge over the whole face.
* **Each level keeps its own sizes**: a coarser level keeps only boxes at least ``handoff`` network pixels long;
  smaller ones are the finer level's (whole there, by the overlap), where they are twice or more as large. Without
  this, a poorly placed low-resolution box of a small face could win the merge over the good one.
* The boxes of all tiles and levels are merged by the detector's usual NMS or box voting.

Cost grows with pixels: the working-scale level costs what the same pixels cost as photos of the reference size
plus the overlap (8-14 % of a 2560-px tile); the coarser levels add 1/16 + 1/256 + ... (network pixels; onnxruntime
is also ~20 % slower per pixel on inputs over ~1.5 MP on the measuring CPU), times (floor / reference scale)^2 where a
floor sets the working scale (clp_det: 4). ``benchmarks/panorama.py`` measures
recall and CPU ms per megapixel (README, Detection policy).

Pure planning (numpy-free maths); ``base.MultiPassDetector`` runs the plan.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# The long side of an ordinary photo after the build's resize (pipeline.decode.DEFAULT_MAX_SHORT_SIDE caps the short
# side at 1500; an ordinary photo is <= ~2:1): images up to this keep one pass, exactly as before the policy.
ORDINARY_SIDE = 1500
REFERENCE_SIDE = ORDINARY_SIDE


@dataclass(frozen=True)
class Tiling:
    """The resolution policy of one pass (see the module docstring). All sizes in network pixels, except
    ``reference_side`` and ``ordinary_side`` (source pixels)."""

    reference_side: int = REFERENCE_SIDE  # the working scale is the pass's scale for a photo this long
    ratio: float = 4.0  # scale step between pyramid levels
    handoff: float = 40.0  # an object this long (network px) at a coarser level is left to that level
    edge: float = 8.0  # boxes this close to an inner tile border may be cut objects: dropped
    ordinary_side: int = ORDINARY_SIDE  # images whose long side is at most this keep one pass
    smallest: float = 0.0  # source px: the smallest object in scope (0: none named)
    needs: float = 0.0  # network px the detector needs that object at: the working scale is at least needs / smallest

    def __post_init__(self) -> None:
        if self.reference_side < 1 or self.ratio <= 1 or self.handoff <= 0 or self.edge < 0 \
                or self.ordinary_side < 0 or self.smallest < 0 or self.needs < 0:
            raise ValueError(f"bad tiling policy {self!r}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.smallest:  # no floor: the record as before the floor existed
            del out["smallest"], out["needs"]
        return out


FACES = Tiling(handoff=40.0)  # faces are about square: 40 px long side ~ 32 px short side, on the recall plateau
# clp_det: a 4.7:1 plate 64 px long is 14 px tall; the floor brings a 16-px-tall plate to 32 px (scale 2.0)
PLATES = Tiling(reference_side=1280, handoff=64.0, smallest=16.0, needs=32.0)
TEXT_LINES = Tiling(reference_side=1280, handoff=32.0)  # PP-OCR at 0.5 (640 / 1280): a 16-px plate is 8 px tall


@dataclass(frozen=True)
class Window:
    """One crop to run at ``scale``: ``x0, y0, x1, y1`` in source pixels; ``cut`` (source px): boxes closer than
    this to an inner border (``inner``: left, top, right, bottom) are dropped, and so are boxes whose long side is
    under ``min_box`` (source px); ``level`` 0 = working scale."""

    x0: int
    y0: int
    x1: int
    y1: int
    scale: float
    level: int
    inner: tuple[bool, bool, bool, bool] = (False, False, False, False)
    cut: float = 0.0
    min_box: float = 0.0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def working_scale(scale_of: Any, tiling: Tiling) -> float:
    """The scale a pass gives an ordinary photo: ``scale_of(width, height)`` for a square of the reference side,
    or the floor that brings the smallest object in scope to the size the detector needs, whichever is finer."""
    reference = scale_of(tiling.reference_side, tiling.reference_side)
    return max(reference, tiling.needs / tiling.smallest) if tiling.smallest else reference


def plan(width: int, height: int, scale: float, working: float, max_side: int | None,
         tiling: Tiling | None) -> list[Window] | None:
    """The windows for a ``width`` x ``height`` image that the pass would see at ``scale`` (one network input), or
    None when that single pass is the policy's answer too (an ordinary photo, ``scale`` >= the ``working`` scale,
    no ``max_side``, or no ``tiling``)."""
    if tiling is None or max_side is None or max(width, height) <= tiling.ordinary_side \
            or scale >= working * (1 - 1e-9):
        return None
    windows: list[Window] = []
    s, level, min_box = working, 0, 0.0
    while True:
        long_cap, short_cap = 2 * max_side / s, 1.25 * max_side / s  # a tile's sides, source px
        cap_w, cap_h = (long_cap, short_cap) if width >= height else (short_cap, long_cap)
        if width <= cap_w and height <= cap_h:  # the whole image fits one network input: the top level
            windows.append(Window(0, 0, width, height, s, level, min_box=min_box))
            return windows
        coarser = s / tiling.ratio
        cut = tiling.edge / s
        overlap = 1.25 * tiling.handoff / coarser + 2 * cut
        # a tile must hold its overlap a few times over (a small max_side, e.g. 128, gets larger tiles than it says)
        cap_w, cap_h = max(cap_w, 4 * overlap), max(cap_h, 4 * overlap)
        xs = spans(width, cap_w, overlap)
        ys = spans(height, cap_h, overlap)
        for y0, y1 in ys:
            for x0, x1 in xs:
                inner = (x0 > 0, y0 > 0, x1 < width, y1 < height)
                windows.append(Window(x0, y0, x1, y1, s, level, inner, cut, min_box))
        s, level = coarser, level + 1
        min_box = tiling.handoff / s


def spans(size: int, cap: float, overlap: float) -> list[tuple[int, int]]:
    """Equal spans of at most ``cap`` covering ``[0, size)``, consecutive ones overlapping by >= ``overlap``."""
    if size <= cap:
        return [(0, size)]
    n = math.ceil((size - overlap) / (cap - overlap - 3))  # (px of slack for the integer rounding below)
    length = min(size, math.ceil((size + (n - 1) * overlap) / n) + 2)
    stride = (size - length) / (n - 1)
    out = []
    for i in range(n):
        lo = int(math.floor(i * stride)) if i < n - 1 else size - length
        out.append((lo, lo + length))
    return out
