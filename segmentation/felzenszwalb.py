"""Offline mask generator: multi-scale graph-based segmentation (Felzenszwalb & Huttenlocher, scikit-image).

No learned model and no weights: this is the honest stand-in used when no SAM checkpoint is given. It is named
``felzenszwalb`` everywhere (registry, manifest identity) so that nobody mistakes its masks for SAM's.

Algorithm (pure numpy / scikit-image / OpenCV, no Beam):

1. Downscale the image so that its longest side is at most ``work_max_side`` (area interpolation).
2. For each ``scale`` run ``skimage.segmentation.felzenszwalb``; split every segment into 8-connected
   components (the algorithm's graph is 8-connected, so this rarely changes anything).
3. Candidates: components of at least ``min_area`` full-resolution pixels covering less than ``max_coverage``
   of the image.
4. ``stability_score`` = mean, over the neighbouring scales (the previous and next in sorted order), of the
   best IoU of the component with any component at that scale: a segment that survives a change of the
   merge threshold is stable. (With a single scale, the neighbour is a companion segmentation at 2x the
   scale, computed for this purpose only.)
5. ``predicted_iou``: there is no model that predicts mask quality here, so it is the same cross-scale
   agreement as ``stability_score`` (documented in the identity as ``predicted_iou: "stability_score"``).
6. Greedy mask-IoU NMS across scales (``nms_iou``, computed on the working-resolution segments before hole
   filling, so final masks may overlap slightly more), best stability first (ties: larger area, coarser
   scale, then component id), at most ``max_masks`` kept.
7. Holes smaller than ``min_area`` full-resolution pixels are filled; the mask is upsampled back to the full
   image by nearest neighbour; bbox and area are measured on the full-resolution mask (pycocotools).
   ``point_coords`` is the pixel (x, y) (integer indices, as floats) deepest inside the mask (distance
   transform), ``crop_box`` the full image.

Deterministic: no randomness anywhere; ties are broken by a fixed order.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from veilset.plugins import Arg, Args, Plugin, needs_modules
from veilset.segmentation.base import MaskAnnotation, check_rgb
from veilset.segmentation.rle import upsampled_window_rle

NAME = "felzenszwalb"
ALGORITHM_VERSION = 1

ARGS = Args(
    Arg("scales", "floats", (100.0, 300.0, 1000.0), "Felzenszwalb scales (distinct; one mask level each)", gt=0),
    Arg("sigma", "float", 0.8, "Gaussian smoothing before segmenting", lo=0),
    Arg("work_max_side", "int", 512, "segment at most this long side (then upsample the masks)", lo=16),
    Arg("min_area", "int", 100, "least mask area in full-resolution pixels (smaller holes are filled)", lo=1),
    Arg("max_coverage", "float", 0.95, "drop masks covering this fraction of the image or more", gt=0, hi=1),
    Arg("nms_iou", "float", 0.7, "mask IoU above which the less stable of two masks is dropped", gt=0, hi=1),
    Arg("max_masks", "int", 200, "at most this many masks per image", lo=1),
)


@dataclass(frozen=True)
class FelzenszwalbOptions:
    """The settings (defaults and ranges: ``ARGS``)."""

    scales: tuple[float, ...] = ARGS["scales"].default
    sigma: float = ARGS["sigma"].default
    work_max_side: int = ARGS["work_max_side"].default
    min_area: int = ARGS["min_area"].default
    max_coverage: float = ARGS["max_coverage"].default
    nms_iou: float = ARGS["nms_iou"].default
    max_masks: int = ARGS["max_masks"].default

    def __post_init__(self) -> None:
        for arg in ARGS:  # the options' one source of truth: names, ranges (as the spec strings are checked)
            object.__setattr__(self, arg.name, arg.parse(getattr(self, arg.name)))
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"felzenszwalb: scales must be distinct, got {self.scales!r}")


def _components(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, list]:
    """Relabel so every 8-connected piece of every segment is its own id 0..n-1; return (ids, areas, slices)."""
    from scipy.ndimage import find_objects
    from skimage.measure import label as cc_label

    ids = cc_label(labels, background=-1, connectivity=2).astype(np.int64) - 1
    areas = np.bincount(ids.ravel())
    return ids, areas, find_objects(ids + 1)


def _pair_ious(a: np.ndarray, area_a: np.ndarray, b: np.ndarray, area_b: np.ndarray):
    """Sparse IoU between every overlapping (component of a, component of b): arrays (ia, ib, iou)."""
    nb = len(area_b)
    keys, inter = np.unique(a.ravel() * nb + b.ravel(), return_counts=True)
    ia, ib = keys // nb, keys % nb
    iou = inter / (area_a[ia] + area_b[ib] - inter)
    return ia, ib, iou


def _best_iou(n: int, idx: np.ndarray, iou: np.ndarray) -> np.ndarray:
    best = np.zeros(n, dtype=np.float64)
    np.maximum.at(best, idx, iou)
    return best


def _fill_small_holes(crop: np.ndarray, max_hole: float) -> np.ndarray:
    """Fill background regions enclosed by ``crop`` (not touching the border) smaller than ``max_hole``."""
    padded = np.pad(crop, 1).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(1 - padded, connectivity=4)
    if n <= 2:  # only the outside (and maybe nothing else)
        return crop
    outside = lab[0, 0]
    small = [i for i in range(1, n) if i != outside and stats[i, cv2.CC_STAT_AREA] < max_hole]
    if not small:
        return crop
    filled = padded.astype(bool) | np.isin(lab, small)
    return filled[1:-1, 1:-1]


@dataclass(frozen=True)
class WorkingImage:
    """Step 1: the image segmented (long side at most ``work_max_side``, area interpolation) and the full size."""

    small: np.ndarray
    height: int  # full resolution
    width: int

    @property
    def pixel_area(self) -> float:
        """Full-resolution pixels per working pixel."""
        return (self.height * self.width) / (self.small.shape[0] * self.small.shape[1])

    def low_area(self, full_area: float) -> float:
        """A full-resolution area in working pixels."""
        return full_area / self.pixel_area

    def row_col_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """For every full-resolution row/column, the working row/column it comes from (nearest neighbour)."""
        h, w = self.small.shape[:2]
        return (np.arange(self.height) * h) // self.height, (np.arange(self.width) * w) // self.width


def working_image(image: np.ndarray, work_max_side: int) -> WorkingImage:
    H, W = image.shape[:2]
    f = min(1.0, work_max_side / max(H, W))
    h, w = max(1, round(H * f)), max(1, round(W * f))
    small = image if (h, w) == (H, W) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return WorkingImage(small, H, W)


def level_scales(scales: tuple[float, ...]) -> list[float]:
    """The scales segmented, sorted; with a single scale, plus the companion at 2x (for its stability only)."""
    ordered = sorted(scales)
    return ordered + [ordered[0] * 2.0] if len(ordered) == 1 else ordered


Level = tuple[np.ndarray, np.ndarray, list]  # (component ids, areas, slices): see _components


def segment_levels(small: np.ndarray, scales: list[float], sigma: float, min_size: int) -> list[Level]:
    """Step 2: one Felzenszwalb segmentation per scale, split into 8-connected components."""
    from skimage.segmentation import felzenszwalb

    return [_components(felzenszwalb(small, scale=s, sigma=sigma, min_size=min_size)) for s in scales]


def scale_overlaps(levels: list[Level], n_levels: int) -> tuple[dict, dict]:
    """Cross-scale IoUs: ``best[(i, j)]`` = each component of level i's best IoU at the neighbouring level j
    (stability), ``pairs[(i, j)]`` = the sparse IoUs (ia, ib, iou) of every pair of real levels (NMS). The
    companion level (index ``n_levels``) is only compared with its neighbour."""
    best: dict[tuple[int, int], np.ndarray] = {}
    pairs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for i in range(len(levels)):
        for j in range(i + 1, len(levels)):
            if j - i > 1 and j >= n_levels:
                continue
            ia, ib, iou = _pair_ious(levels[i][0], levels[i][1], levels[j][0], levels[j][1])
            pairs[(i, j)] = (ia, ib, iou)
            if j == i + 1:
                best[(i, j)] = _best_iou(len(levels[i][1]), ia, iou)
                best[(j, i)] = _best_iou(len(levels[j][1]), ib, iou)
    return best, pairs


@dataclass(frozen=True)
class Candidates:
    """Step 3's components, one entry per candidate ``k``: its level, component id, stability and area (working
    pixels)."""

    levels: tuple[int, ...]
    ids: tuple[int, ...]
    stability: tuple[float, ...]
    areas: tuple[int, ...]

    def order(self) -> list[int]:
        """Best first: stability desc, area desc, coarser scale first, component id."""
        return np.lexsort((np.array(self.ids), -np.array(self.levels), -np.array(self.areas),
                           -np.array(self.stability))).tolist()

    def index(self) -> dict[tuple[int, int], int]:
        return {(lv, c): k for k, (lv, c) in enumerate(zip(self.levels, self.ids))}


def candidates(levels: list[Level], best: dict, pixel_area: float, min_area: int,
               max_coverage: float) -> Candidates:
    """Steps 3-4: components of at least ``min_area`` full-resolution pixels covering less than ``max_coverage``,
    with their stability (mean best IoU at the neighbouring scales)."""
    total = levels[0][0].size
    lv_, id_, stab_, area_ = [], [], [], []
    for i, (_, areas, _) in enumerate(levels):
        stab = np.mean([best[(i, j)] for j in (i - 1, i + 1) if (i, j) in best], axis=0)
        keep = np.nonzero((areas * pixel_area >= min_area) & (areas < max_coverage * total))[0]
        lv_ += [i] * len(keep)
        id_ += keep.tolist()
        stab_ += stab[keep].tolist()
        area_ += areas[keep].tolist()
    return Candidates(tuple(lv_), tuple(id_), tuple(stab_), tuple(area_))


def overlapping(pairs: dict, cands: Candidates, n_levels: int, nms_iou: float) -> dict[int, list[int]]:
    """Step 6's graph: for each candidate, the candidates of other levels it overlaps with IoU > ``nms_iou``."""
    index = cands.index()
    out: dict[int, list[int]] = {}
    for (i, j), (ia, ib, iou) in pairs.items():
        if i >= n_levels or j >= n_levels:
            continue
        for a, b in zip(ia[iou > nms_iou].tolist(), ib[iou > nms_iou].tolist()):
            ka, kb = index.get((i, a)), index.get((j, b))
            if ka is None or kb is None:
                continue
            out.setdefault(ka, []).append(kb)
            out.setdefault(kb, []).append(ka)
    return out


def select_masks(cands: Candidates, overlaps: dict[int, list[int]], levels: list[Level], work: WorkingImage,
                 opt: FelzenszwalbOptions) -> list[MaskAnnotation]:
    """Steps 6-7: greedy NMS best first; each kept candidate becomes a full-resolution annotation, dropped if its
    real area misses the limits (the working-resolution area only estimated it); at most ``max_masks``."""
    row_map, col_map = work.row_col_maps()
    H, W = work.height, work.width
    out: list[MaskAnnotation] = []
    kept: set[int] = set()
    for k in cands.order():
        if any(o in kept for o in overlaps.get(k, ())):
            continue
        ann = annotation(levels[cands.levels[k]], cands.ids[k], float(cands.stability[k]), row_map, col_map,
                         work.low_area(opt.min_area), H, W)
        if ann.area < opt.min_area or ann.area >= opt.max_coverage * H * W:
            continue
        out.append(ann)
        kept.add(k)
        if len(out) >= opt.max_masks:
            break
    return out


class FelzenszwalbMaskGenerator:
    """Multi-scale Felzenszwalb segmentation as SA-1B-style annotations (no model; see module docstring)."""

    name = NAME

    def __init__(self, options: FelzenszwalbOptions | None = None, **kwargs: Any) -> None:
        if options is not None and kwargs:
            raise ValueError("felzenszwalb: pass either options or keyword settings, not both")
        if options is None:
            options = FelzenszwalbOptions(**ARGS.parse_given(kwargs, self.name))
        self.options = options

    def identity(self) -> dict[str, Any]:
        import skimage

        settings = asdict(self.options)
        settings["scales"] = list(settings["scales"])
        return {
            "name": self.name,
            "kind": "offline graph-based segmentation (no learned model)",
            "algorithm_version": ALGORITHM_VERSION,
            "scikit_image": skimage.__version__,
            "settings": settings,
            "predicted_iou": "stability_score",
            "stability_score": "mean best IoU with the segments at the neighbouring scales",
        }

    # ------------------------------------------------------------------------------------------------------
    def generate(self, image_rgb: np.ndarray) -> list[MaskAnnotation]:
        """The steps of the module docstring, each a function of this module."""
        image = check_rgb(image_rgb, "felzenszwalb")
        if image.shape[0] == 0 or image.shape[1] == 0:
            return []
        opt = self.options
        work = working_image(image, opt.work_max_side)
        levels = segment_levels(work.small, level_scales(opt.scales), opt.sigma,
                                max(1, int(work.low_area(opt.min_area))))
        n_levels = len(opt.scales)
        best, pairs = scale_overlaps(levels, n_levels)
        cands = candidates(levels[:n_levels], best, work.pixel_area, opt.min_area, opt.max_coverage)
        if not cands.ids:
            return []
        overlaps = overlapping(pairs, cands, n_levels, opt.nms_iou)
        return select_masks(cands, overlaps, levels, work, opt)


def annotation(level: Level, cid: int, score: float, row_map: np.ndarray, col_map: np.ndarray,
               min_area_low: float, H: int, W: int) -> MaskAnnotation:
    """Step 7 for one component: holes filled, upsampled to full resolution, RLE, bbox, area, deepest point."""
    ids, _, slices = level
    sy, sx = slices[cid]
    ys, xs = (sy.start, sy.stop), (sx.start, sx.stop)
    crop = ids[ys[0]:ys[1], xs[0]:xs[1]] == cid
    crop = _fill_small_holes(crop, min_area_low)
    fy0, fy1 = np.searchsorted(row_map, [ys[0], ys[1]])
    fx0, fx1 = np.searchsorted(col_map, [xs[0], xs[1]])
    rle = upsampled_window_rle(crop, row_map[fy0:fy1] - ys[0], col_map[fx0:fx1] - xs[0], fy0, fx0, H, W)
    area = int(mask_utils.area(rle))
    bbox = tuple(float(v) for v in mask_utils.toBbox(rle))
    # deepest pixel of the working-resolution mask, mapped to the middle of its full-resolution cell
    dist = cv2.distanceTransform(np.pad(crop, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
    py, pxl = np.unravel_index(int(np.argmax(dist)), dist.shape)
    ry = np.nonzero(row_map[fy0:fy1] == ys[0] + py)[0]
    rx = np.nonzero(col_map[fx0:fx1] == xs[0] + pxl)[0]
    point = (float(fx0 + rx[len(rx) // 2]), float(fy0 + ry[len(ry) // 2]))
    return MaskAnnotation(
        segmentation={"size": [int(H), int(W)], "counts": rle["counts"].decode("ascii")},
        bbox_xywh=bbox,
        area=area,
        predicted_iou=score,
        stability_score=score,
        point_coords=(point,),
        crop_box_xywh=(0.0, 0.0, float(W), float(H)),
    )


PLUGIN = Plugin("mask generator", NAME, FelzenszwalbMaskGenerator, ARGS,
                check=lambda: needs_modules("skimage", "scipy", "cv2", "pycocotools"),
                summary="offline multi-scale graph segmentation (no model, no weights); the default")
