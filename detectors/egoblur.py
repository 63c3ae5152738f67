"""Meta's EgoBlur face and licence-plate detectors from user-supplied TorchScript files.

Two registry names, one per label (a detector has one label; the face and plate slots are separate):

    egoblur_face:weights=/models/ego_blur_face.jit[,gen=1,threshold=0.9,nms=0.3,short_side=0,max_side=0,
                 preset=default,margin=0,min_size=0,device=cpu,threads=0]
    egoblur_plate:weights=/models/ego_blur_lp.jit[,...]

The ``.jit`` files are not redistributable here: get them from https://www.projectaria.com/tools/egoblur/
(licence click-through) and pass their path. Nothing is downloaded.

Model interfaces (``interface`` is chosen from the file, recorded in ``identity()``):
- ``forward`` -- gen1 files (``gen1/script/demo_ego_blur_gen1.py``) and traced gen2 exports: ``model(image)``
  on one BGR uint8 C x H x W tensor returns ``(boxes, labels, scores, dims)`` (boxes xyxy in input pixels);
  a 5-tuple ``(boxes, labels, _, scores, _)`` (gen2 trace) also filters ``labels`` by class id
  (face 0, plate 1) as ``gen2/script/predictor.py`` does.
- ``script`` -- scripted detectron2 gen2 files, which expose ``inference(batch, do_postprocess=False)``
  returning scripted ``Instances`` (``_pred_boxes.tensor``, ``_scores``, optional ``_pred_classes``). This
  path follows the gen2 predictor source; it has been tested on a stand-in module only, not on Meta's files.

Post-processing as in both demos: torchvision NMS first, then ``score > threshold``; boxes mapped back to the
image and clipped. Then ``detectors.base.MultiPassDetector`` merges the passes of the ``preset`` (``default``:
the whole image; ``crowd``: + 2x2 overlapping tiles, for small faces) and applies ``min_size`` and ``margin``
(EgoBlur's ``scale_factor_detections`` 1.15 is ``margin=0.075``).

Generation defaults (``gen``; any explicit option overrides):
- gen 1: thresholds face 0.9 / plate 0.9, NMS IoU 0.3, native input size (the gen1 demo defaults);
- gen 2: thresholds face 0.67416 / plate 0.74475 (``camera-rgb`` in ``gen2/script/constants.py``), NMS IoU
  0.5 (gen2 demo default), ``ResizeShortestEdge(1200, max_size=1200)`` before the model (``short_side=1200,
  max_side=1200``), boxes mapped back.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from veilset.detectors import ops
from veilset.detectors.base import (FACE, LICENSE_PLATE, MARGIN_ARG, MIN_SIZE_ARG, NMS_ARG_HELP, THREADS_ARG,
                                    MultiPassDetector, Pass, check_image, device_option, file_sha256, package_version)
from veilset.plugins import Arg, Args, MissingExtraError, MissingFileError, Plugin, needs_modules

INSTALL_HINT = "pip install 'veilset[egoblur]'"
WEIGHTS_HELP = ("EgoBlur TorchScript files (ego_blur_face.jit / ego_blur_lp.jit, gen1 or gen2) are available "
                "from https://www.projectaria.com/tools/egoblur/ after accepting Meta's licence")

FACE_NAME = "egoblur_face"
PLATE_NAME = "egoblur_plate"
CLASS_IDS = {FACE: 0, LICENSE_PLATE: 1}  # gen2/script/predictor.py ClassID


@dataclass(frozen=True)
class Preset:
    face_threshold: float
    plate_threshold: float
    nms_iou: float
    short_side: int  # shortest edge target in pixels; 0 = native size
    max_side: int  # cap on the long side after ``short_side``; 0 = no cap

    def threshold(self, label: str) -> float:
        return self.face_threshold if label == FACE else self.plate_threshold


PRESETS_BY_GEN = {
    1: Preset(face_threshold=0.9, plate_threshold=0.9, nms_iou=0.3, short_side=0, max_side=0),
    2: Preset(face_threshold=0.67416, plate_threshold=0.74475, nms_iou=0.5, short_side=1200, max_side=1200),
}
DEFAULT_GEN = 1
DEFAULT_DEVICE = "cpu"
DEFAULT_MARGIN = 0.0
PRESETS: dict[str, tuple[Pass, ...]] = {
    "default": (Pass(grid=1),),
    "crowd": (Pass(grid=1), Pass(grid=2)),
}


def _args(det: str) -> Args:
    """The options of ``egoblur_face`` / ``egoblur_plate`` (None: the generation's default, ``PRESETS_BY_GEN``)."""
    return Args(
        Arg("weights", "text", None, "the EgoBlur TorchScript file (.jit); required"),
        Arg("gen", "int", DEFAULT_GEN, "EgoBlur generation of the file: sets the defaults below", lo=1, hi=2),
        Arg("threshold", "float", None, "score threshold (default: the generation's)", lo=0, hi=1),
        Arg("nms", "float", None, NMS_ARG_HELP + " (default: the generation's)", lo=0.0, hi=1.0),
        Arg("short_side", "int", None, "resize the short side to this before the model (0: native; default: the "
            "generation's)", lo=0, hi=100_000),
        Arg("max_side", "int", None, "cap on the long side after short_side (0: none; default: the generation's)",
            lo=0, hi=100_000),
        Arg("preset", "choice", "default", "passes per image: default (whole image), crowd (+ 2x2 tiles)",
            choices=tuple(PRESETS)),
        MARGIN_ARG,
        MIN_SIZE_ARG,
        Arg("device", "text", DEFAULT_DEVICE, "torch device: cpu, cuda or cuda:N",
            convert=lambda value: device_option(value, det)),
        THREADS_ARG,
    )


ARGS = {FACE: _args(FACE_NAME), LICENSE_PLATE: _args(PLATE_NAME)}


# ------------------------------------------------------------------------------------------ pure maths

def resize_shortest_edge(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """(height, width) after detectron2's ``ResizeShortestEdge`` (short edge -> ``short``, long side capped at
    ``max_size``); ``short`` 0 keeps the size."""
    if short <= 0:
        return height, width
    scale = short / min(height, width)
    new_h, new_w = height * scale, width * scale
    if max_size > 0 and max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return max(1, int(new_h + 0.5)), max(1, int(new_w + 0.5))


def to_model_input(image_rgb: np.ndarray) -> np.ndarray:
    """H x W x 3 RGB uint8 -> contiguous 3 x H x W BGR uint8 (what EgoBlur's TorchScript models take)."""
    return np.ascontiguousarray(image_rgb[:, :, ::-1].transpose(2, 0, 1))


# -------------------------------------------------------------------------------------------- detector

class EgoBlurDetector(MultiPassDetector):
    """One EgoBlur TorchScript model for one label. Build it as ``egoblur_face`` / ``egoblur_plate``."""

    def __init__(self, label: str, **options: Any) -> None:
        if label not in CLASS_IDS:
            raise ValueError(f"egoblur: label must be one of {', '.join(CLASS_IDS)}, got {label!r}")
        self.label = label
        self.name = FACE_NAME if label == FACE else PLATE_NAME
        det = self.name
        o = ARGS[label].parse(options, det)
        self.gen = o["gen"]
        defaults = PRESETS_BY_GEN[self.gen]
        self.threshold = defaults.threshold(label) if o["threshold"] is None else o["threshold"]
        self.nms_iou = defaults.nms_iou if o["nms"] is None else o["nms"]
        self.merge_iou = self.nms_iou
        self.short_side = defaults.short_side if o["short_side"] is None else o["short_side"]
        self.max_side = defaults.max_side if o["max_side"] is None else o["max_side"]
        self.preset = o["preset"]
        self.passes = PRESETS[self.preset]
        self.margin, self.min_size = o["margin"], o["min_size"]
        self.device, self.threads = o["device"], o["threads"]
        weights = o["weights"]
        if weights is None or not str(weights).strip():
            raise ValueError(f"{det}: weights=PATH.jit is required ({WEIGHTS_HELP})")
        path = os.path.expanduser(str(weights).strip())
        if not os.path.isfile(path):
            raise MissingFileError(f"{det}: weights file {weights!r} does not exist ({WEIGHTS_HELP})")
        try:
            import torch
            import torchvision  # noqa: F401  (registers torchvision::nms used by the models and by us)
        except ImportError as err:
            raise MissingExtraError(f"{det} needs torch and torchvision ({err}); install them with: {INSTALL_HINT}") from err
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"{det}: device {options.get('device')!r} requested but torch sees no CUDA device")
        if self.threads:
            torch.set_num_threads(self.threads)  # process-wide: one model per Beam worker process
        import warnings

        try:
            with warnings.catch_warnings():  # torch >= 2.10 flags TorchScript as deprecated; it is Meta's format
                warnings.simplefilter("ignore", FutureWarning)
                model = torch.jit.load(path, map_location="cpu")
        except Exception as err:
            raise ValueError(f"{det}: cannot load TorchScript file {path!r}: {err}") from err
        self._model = model.to(self.device).eval()
        self.interface = "script" if hasattr(model, "inference") else "forward"
        self.weights_path = path

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "model": f"EgoBlur gen{self.gen}",
            "runtime": "torch " + str(package_version("torch")),
            "weights": os.path.basename(self.weights_path),
            "weights_sha256": file_sha256(self.weights_path),
            "interface": self.interface,
            "threshold": self.threshold,
            "nms": self.nms_iou,
            "short_side": self.short_side,
            "max_side": self.max_side,
            "margin": self.margin,
            "min_size": self.min_size,
            "preset": self.preset,
            "passes": [p.to_dict() for p in self.passes],
        }

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Any]]:
        for image in images_rgb:
            check_image(image)
        return [self.detect(image) for image in images_rgb]

    # one pass on one image (or tile): MultiPassDetector.boxes_scores calls this for every pass
    def _run_one(self, image_rgb: np.ndarray, p: Pass) -> tuple[np.ndarray, np.ndarray]:
        """(boxes xyxy in ``image_rgb`` pixels, scores) after the model's NMS and ``score > threshold``."""
        import cv2
        import torch
        from torchvision.ops import nms

        source_hw = image_rgb.shape[:2]
        input_hw = resize_shortest_edge(*source_hw, self.short_side, self.max_side)
        if input_hw != source_hw:
            image_rgb = cv2.resize(image_rgb, (input_hw[1], input_hw[0]), interpolation=cv2.INTER_LINEAR)
        tensor = torch.from_numpy(to_model_input(image_rgb)).to(self.device)
        with torch.no_grad():
            boxes, scores, labels = self._run(tensor)
        boxes = boxes.detach().float().reshape(-1, 4)
        scores = scores.detach().float().reshape(-1)
        if labels is not None:
            keep = labels.reshape(-1) == CLASS_IDS[self.label]
            boxes, scores = boxes[keep], scores[keep]
        if boxes.shape[0] != scores.shape[0]:
            raise RuntimeError(f"{self.name}: model gave {boxes.shape[0]} boxes but {scores.shape[0]} scores")
        if boxes.numel():
            kept = nms(boxes, scores, self.nms_iou)
            boxes, scores = boxes[kept], scores[kept]
        above = scores > self.threshold
        boxes_np = ops.map_boxes_to_source(boxes[above].cpu().numpy().astype(np.float64).reshape(-1, 4), input_hw, source_hw)
        scores_np = scores[above].cpu().numpy().astype(np.float64)
        nonempty = (boxes_np[:, 2] > boxes_np[:, 0]) & (boxes_np[:, 3] > boxes_np[:, 1])
        return boxes_np[nonempty], scores_np[nonempty]

    def _run(self, tensor: Any) -> tuple[Any, Any, Any]:
        """Model call -> (boxes, scores, labels or None) in model-input pixels."""
        import torch

        if self.interface == "script":
            preds = self._model.inference([{"image": tensor}], do_postprocess=False)
            if len(preds) != 1:
                raise RuntimeError(f"{self.name}: expected 1 output from inference(), got {len(preds)}")
            inst = preds[0]
            try:
                boxes = inst._pred_boxes.tensor
                scores = inst._scores
            except AttributeError as err:
                raise RuntimeError(f"{self.name}: inference() output has no _pred_boxes/_scores ({err})") from err
            labels = getattr(inst, "_pred_classes", None)
            return boxes, scores, labels
        out = self._model(tensor)
        if not isinstance(out, (tuple, list)) or len(out) not in (4, 5) \
                or not all(isinstance(t, torch.Tensor) for t in out):
            desc = (f"{type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list))
                    else type(out).__name__)
            raise RuntimeError(f"{self.name}: expected the model to return (boxes, labels, scores, dims) "
                               f"tensors, got {desc}")
        if len(out) == 4:
            boxes, _labels, scores, _dims = out
            return boxes, scores, None
        boxes, labels, _, scores, _ = out
        return boxes, scores, labels


def _check() -> Any:
    return needs_modules("torch", "torchvision", hint=INSTALL_HINT, note="needs weights=PATH.jit (" + WEIGHTS_HELP + ")")


def egoblur_face(**options: Any) -> EgoBlurDetector:
    """``egoblur_face:weights=PATH.jit[,gen=1|2,threshold=,nms=,short_side=,max_side=,preset=,margin=,...]``"""
    return EgoBlurDetector(FACE, **options)


def egoblur_plate(**options: Any) -> EgoBlurDetector:
    """``egoblur_plate:weights=PATH.jit[,gen=1|2,threshold=,nms=,short_side=,max_side=,preset=,margin=,...]``"""
    return EgoBlurDetector(LICENSE_PLATE, **options)


FACE_PLUGIN = Plugin("detector", FACE_NAME, egoblur_face, ARGS[FACE], check=_check, tags=(FACE,),
                     summary="Meta's EgoBlur faces from a user-supplied TorchScript file (torch)")
PLATE_PLUGIN = Plugin("detector", PLATE_NAME, egoblur_plate, ARGS[LICENSE_PLATE], check=_check,
                      tags=(LICENSE_PLATE,), summary="Meta's EgoBlur licence plates from a user-supplied TorchScript "
                                                     "file (torch)")
