"""Meta's EgoBlur face and licence-plate detectors from user-supplied TorchScript files.

Two registry names, one per label (a detector has one label; the face and plate slots are separate):

    egoblur_face:weights=/models/ego_blur_face.jit[,threshold=0.9,nms_iou=0.3,gen=1,device=cpu,resize=0,max_size=0]
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

Post-processing as in both demos: torchvision NMS first, then ``score > threshold``; boxes clipped to the image.

Generation presets (``gen``; any explicit option overrides):
- gen 1: thresholds face 0.9 / plate 0.9, NMS IoU 0.3, native input size (the gen1 demo defaults);
- gen 2: thresholds face 0.67416 / plate 0.74475 (``camera-rgb`` in ``gen2/script/constants.py``), NMS IoU
  0.5 (gen2 demo default), ``ResizeShortestEdge(1200, max_size=1200)`` before the model, boxes mapped back.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from detectors.base import FACE, LICENSE_PLATE, Detection, register

INSTALL_HINT = "pip install 'veilset[torch]'"
WEIGHTS_HELP = ("EgoBlur TorchScript files (ego_blur_face.jit / ego_blur_lp.jit, gen1 or gen2) are available "
                "from https://www.projectaria.com/tools/egoblur/ after accepting Meta's licence")

FACE_NAME = "egoblur_face"
PLATE_NAME = "egoblur_plate"
CLASS_IDS = {FACE: 0, LICENSE_PLATE: 1}  # gen2/script/predictor.py ClassID
INTERFACES = ("forward", "script")


@dataclass(frozen=True)
class Preset:
    face_threshold: float
    plate_threshold: float
    nms_iou: float
    resize: int  # shortest edge target in pixels; 0 = native size
    max_size: int  # cap on the long side after ``resize``; 0 = no cap

    def threshold(self, label: str) -> float:
        return self.face_threshold if label == FACE else self.plate_threshold


PRESETS = {
    1: Preset(face_threshold=0.9, plate_threshold=0.9, nms_iou=0.3, resize=0, max_size=0),
    2: Preset(face_threshold=0.67416, plate_threshold=0.74475, nms_iou=0.5, resize=1200, max_size=1200),
}
DEFAULT_GEN = 1
DEFAULT_DEVICE = "cpu"


# --------------------------------------------------------------------------------------- option parsing

def _float(det: str, name: str, value: Any, lo: float, hi: float) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{det}: {name} must be a number, got {value!r}") from None
    if not (lo <= out <= hi):
        raise ValueError(f"{det}: {name} must be in [{lo}, {hi}], got {value!r}")
    return out


def _int(det: str, name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{det}: {name} must be an integer, got {value!r}")
    try:
        out = value if isinstance(value, int) else int(str(value).strip())
    except ValueError:
        raise ValueError(f"{det}: {name} must be an integer, got {value!r}") from None
    if not (lo <= out <= hi):
        raise ValueError(f"{det}: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return out


def _device(det: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise ValueError(f"{det}: device must be cpu, cuda or cuda:N, got {value!r}")


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


def map_and_clip(boxes_xyxy: np.ndarray, input_hw: tuple[int, int], source_hw: tuple[int, int]) -> np.ndarray:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    (ih, iw), (sh, sw) = input_hw, source_hw
    out = boxes * np.array([sw / iw, sh / ih, sw / iw, sh / ih])
    out[:, 0::2] = np.clip(out[:, 0::2], 0.0, float(sw))
    out[:, 1::2] = np.clip(out[:, 1::2], 0.0, float(sh))
    return out


def check_image(det: str, image_rgb: Any) -> None:
    if not isinstance(image_rgb, np.ndarray) or image_rgb.ndim != 3 or image_rgb.shape[2] != 3 \
            or image_rgb.dtype != np.uint8 or 0 in image_rgb.shape:
        desc = (f"{image_rgb.dtype} array of shape {image_rgb.shape}" if isinstance(image_rgb, np.ndarray)
                else type(image_rgb).__name__)
        raise ValueError(f"{det}: expected an H x W x 3 uint8 RGB array, got {desc}")


# -------------------------------------------------------------------------------------------- detector

class EgoBlurDetector:
    """One EgoBlur TorchScript model for one label. Build it as ``egoblur_face`` / ``egoblur_plate``."""

    def __init__(self, label: str, weights: str | None = None, threshold: float | str | None = None,
                 nms_iou: float | str | None = None, gen: int | str = DEFAULT_GEN, device: str = DEFAULT_DEVICE,
                 resize: int | str | None = None, max_size: int | str | None = None) -> None:
        if label not in CLASS_IDS:
            raise ValueError(f"egoblur: label must be one of {', '.join(CLASS_IDS)}, got {label!r}")
        self.label = label
        self.name = FACE_NAME if label == FACE else PLATE_NAME
        det = self.name
        self.gen = _int(det, "gen", gen, 1, 2)
        preset = PRESETS[self.gen]
        self.threshold = preset.threshold(label) if threshold is None else _float(det, "threshold", threshold, 0, 1)
        self.nms_iou = preset.nms_iou if nms_iou is None else _float(det, "nms_iou", nms_iou, 0.0, 1.0)
        self.resize = preset.resize if resize is None else _int(det, "resize", resize, 0, 100_000)
        self.max_size = preset.max_size if max_size is None else _int(det, "max_size", max_size, 0, 100_000)
        self.device = _device(det, device)
        if weights is None or not str(weights).strip():
            raise ValueError(f"{det}: weights=PATH.jit is required ({WEIGHTS_HELP})")
        path = os.path.expanduser(str(weights).strip())
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{det}: weights file {weights!r} does not exist ({WEIGHTS_HELP})")
        try:
            import torch
            import torchvision  # noqa: F401  (registers torchvision::nms used by the models and by us)
        except ImportError as err:
            raise ImportError(f"{det} needs torch and torchvision ({err}); install them with: {INSTALL_HINT}") from err
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"{det}: device {device!r} requested but torch sees no CUDA device")
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
        self.weights_sha256 = _sha256(path)

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": f"EgoBlur gen{self.gen}",
            "version": _torch_version(),
            "weights": os.path.basename(self.weights_path),
            "weights_sha256": self.weights_sha256,
            "threshold": self.threshold,
            "nms_iou": self.nms_iou,
            "resize": self.resize,
            "max_size": self.max_size,
            "interface": self.interface,
        }

    def detect(self, image_rgb: np.ndarray) -> list[Detection]:
        boxes, scores = self.boxes_scores(image_rgb)
        order = np.argsort(-scores, kind="stable")
        return [Detection(label=self.label, box_xyxy=tuple(float(v) for v in boxes[i]), score=float(scores[i]),
                          detector=self.name) for i in order
                if boxes[i, 2] > boxes[i, 0] and boxes[i, 3] > boxes[i, 1]]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        for image in images_rgb:
            check_image(self.name, image)
        return [self.detect(image) for image in images_rgb]

    def boxes_scores(self, image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes xyxy in source pixels, scores) after NMS and the score threshold."""
        import cv2
        import torch
        from torchvision.ops import nms

        check_image(self.name, image_rgb)
        source_hw = image_rgb.shape[:2]
        input_hw = resize_shortest_edge(*source_hw, self.resize, self.max_size)
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
        boxes_np = boxes[above].cpu().numpy().astype(np.float64).reshape(-1, 4)
        scores_np = scores[above].cpu().numpy().astype(np.float64)
        return map_and_clip(boxes_np, input_hw, source_hw), scores_np

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


@register(FACE_NAME)
def egoblur_face(**kwargs: Any) -> EgoBlurDetector:
    """``egoblur_face:weights=PATH.jit[,threshold=,nms_iou=,gen=1|2,device=,resize=,max_size=]``"""
    return EgoBlurDetector(FACE, **kwargs)


@register(PLATE_NAME)
def egoblur_plate(**kwargs: Any) -> EgoBlurDetector:
    """``egoblur_plate:weights=PATH.jit[,threshold=,nms_iou=,gen=1|2,device=,resize=,max_size=]``"""
    return EgoBlurDetector(LICENSE_PLATE, **kwargs)


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _torch_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None
