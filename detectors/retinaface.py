"""RetinaFace (ResNet-50) face detector through ``retinaface-pytorch`` (ternaus/retinaface 0.0.8).

Spec: ``retinaface[:weights=PATH,threshold=0.5,nms=0.4,preset=default,max_side=N,margin=0,min_size=0,
batch_size=1,device=cpu,threads=0,normalize=imagenet,download=false]``.

Weights are looked up offline, in this order:
  1. ``weights=PATH`` (a ``.pth``/``.pt`` state dict, a Lightning checkpoint with ``state_dict``, or the
     package's single-member ``.zip`` release file);
  2. the torch hub cache: ``torch.hub.get_dir()/checkpoints/retinaface_resnet50_2020-07-20-f168fae3c.zip``;
  3. only with ``download=true``: the package's release URL (``WEIGHTS_URL``), saved to (2).
Nothing is ever downloaded by default; with no weights the constructor raises ``FileNotFoundError`` naming
the file, its URL and where to put it.

Pre/post-processing follows the package's ``retinaface/predict_single.py`` (verified against its source):
RGB input normalised with albumentations' ``Normalize()`` defaults (ImageNet mean/std on 0..255), priors
``min_sizes [[16,32],[64,128],[256,512]]``, ``steps [8,16,32]``, variances ``0.1/0.2``, softmax score of
class 1, score threshold, then torchvision NMS (IoU 0.4). The BGR mean subtraction (104, 117, 123) of the
original biubug6/Pytorch_Retinaface code is *not* what the package's weights expect; it is available as
``normalize=bgr_mean`` for biubug6 checkpoints (``Resnet50_Final.pth``; its ``module.`` key prefix is handled).

Only ``network=resnet50`` exists: retinaface-pytorch 0.0.8's ``RetinaFace`` raises NotImplementedError for
any other backbone (there is no MobileNet-0.25 in the package).

Passes and recall helpers come from ``detectors.base.MultiPassDetector`` (same presets as centerface):
``default`` = the whole image, long side capped at ``max_side`` (1280; never upscaled), ``native``, ``crowd``
(+ 2x2 overlapping tiles), ``upscale`` (+ a 2x pass); passes are merged with NMS, then ``threshold``,
``min_size`` and ``margin`` apply. Within a pass the image is resized (aspect kept) and zero-padded (after
normalisation) at the bottom/right to a multiple of 32, so boxes map back with the exact per-axis ratios.

Batching and reproducibility: ``batch_size`` > 1 (single-pass presets only) runs images whose padded sizes are
equal in one forward pass (an image is never padded to a neighbour's size). Even so, torch's CPU kernels give
float differences of ~1e-5 between batch sizes and Beam does not fix batch composition, so the default
``batch_size=1`` keeps reruns byte-identical. Raise it on a GPU for speed.
"""
from __future__ import annotations

import functools
import io
import os
import sys
import zipfile
from typing import Any, Sequence

import numpy as np

from veilset.detectors import ops
from veilset.detectors.base import (FACE, MARGIN_ARG, MIN_SIZE_ARG, NMS_ARG_HELP, THREADS_ARG, Detection,
                                    MultiPassDetector, Pass, check_image, device_option, file_sha256, option_int,
                                    package_version, threshold_arg, to_detections)
from veilset.plugins import (Arg, Args, MissingExtraError, MissingFileError, Plugin, available, needs_modules,
                             unavailable)

NAME = "retinaface"
PACKAGE = "retinaface-pytorch"
INSTALL_HINT = "pip install 'veilset[retinaface]' && pip install --no-deps retinaface-pytorch==0.0.8"

WEIGHTS_URL = ("https://github.com/ternaus/retinaface/releases/download/0.01/"
               "retinaface_resnet50_2020-07-20-f168fae3c.zip")
WEIGHTS_FILE = "retinaface_resnet50_2020-07-20-f168fae3c.zip"

# retinaface/predict_single.py
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
RETURN_LAYERS = {"layer2": 1, "layer3": 2, "layer4": 3}
IN_CHANNELS = 256
OUT_CHANNELS = 256
# albumentations.Normalize() defaults, applied to RGB 0..255 (max_pixel_value 255)
IMAGENET_MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
# biubug6/Pytorch_Retinaface detect.py: img -= (104, 117, 123) on BGR
BGR_MEAN = (104.0, 117.0, 123.0)

NETWORKS = ("resnet50",)
NORMALIZATIONS = ("imagenet", "bgr_mean")
DEVICES_HELP = "cpu, cuda or cuda:N"
PAD_MULTIPLE = 32
PRE_NMS_TOP_K = 5000  # biubug6 detect.py top_k: bounds NMS cost when the threshold is low

DEFAULT_THRESHOLD = 0.5  # not tuned on real photos (no weights offline); the package's own default is 0.7
DEFAULT_NMS = 0.4  # the package's nms_threshold
DEFAULT_MARGIN = 0.0
DEFAULT_BATCH_SIZE = 1  # see the module docstring: batch composition changes floats
MAX_SIDE = 1280
# Same passes as centerface's presets (detectors.centerface.PRESETS).
PRESETS: dict[str, tuple[Pass, ...]] = {
    "default": (Pass(grid=1, max_side=MAX_SIDE),),
    "native": (Pass(grid=1, max_side=None),),
    "crowd": (Pass(grid=1, max_side=MAX_SIDE), Pass(grid=2, max_side=MAX_SIDE)),
    "upscale": (Pass(grid=1, max_side=MAX_SIDE), Pass(grid=1, max_side=2 * MAX_SIDE, scale=2.0)),
}
DEFAULT_DEVICE = "cpu"
DEFAULT_NORMALIZE = "imagenet"

_STRIP_PREFIXES = ("module.", "model.")


def _weights_option(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError(f"weights must be a file path, got {value!r}")
    return text


def _max_side_option(value: Any) -> int:
    side = option_int("max_side", value, 0, 100_000)
    if 0 < side < PAD_MULTIPLE:
        raise ValueError(f"max_side must be 0 (native size) or >= {PAD_MULTIPLE}, got {value!r}")
    return side


ARGS = Args(
    Arg("weights", "text", None, "weights file (default: the torch hub cache; see download)",
        convert=_weights_option),
    Arg("network", "choice", "resnet50", "backbone", choices=NETWORKS),
    threshold_arg(DEFAULT_THRESHOLD),
    Arg("nms", "float", DEFAULT_NMS, NMS_ARG_HELP, lo=0.0, hi=1.0),
    Arg("preset", "choice", "default", "passes per image (default: long side 1280)", choices=tuple(PRESETS)),
    Arg("max_side", "int", None, "long side of each pass instead of the preset's (0: native size)", lo=0,
        hi=100_000, convert=_max_side_option),
    MARGIN_ARG,
    MIN_SIZE_ARG,
    Arg("batch_size", "int", DEFAULT_BATCH_SIZE, "images per forward pass (changes floats slightly)", lo=1,
        hi=1024),
    Arg("device", "text", DEFAULT_DEVICE, f"torch device: {DEVICES_HELP}", convert=device_option),
    THREADS_ARG,
    Arg("normalize", "choice", DEFAULT_NORMALIZE, "input normalisation", choices=NORMALIZATIONS),
    Arg("download", "bool", False, "fetch the weights into the torch hub cache when missing"),
)


# ------------------------------------------------------------------------------------------ pure maths

def pass_size(height: int, width: int, p: Pass) -> tuple[int, int]:
    """(height, width) of the network image for pass ``p``: ``p.scale`` x the image, shrunk so that the long
    side is at most ``p.max_side`` (None: no cap); aspect kept, rounded to whole pixels."""
    f = p.scale
    if p.max_side is not None and max(height, width) * f > p.max_side:
        f = p.max_side / max(height, width)
    if f == 1.0:
        return height, width
    return max(1, int(round(height * f))), max(1, int(round(width * f)))


def padded(height: int, width: int, multiple: int = PAD_MULTIPLE) -> tuple[int, int]:
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def normalize_image(image_rgb: np.ndarray, normalize: str) -> np.ndarray:
    """H x W x 3 uint8 RGB -> H x W x 3 float32 network input (channel order of the chosen convention)."""
    img = image_rgb.astype(np.float32)
    if normalize == "imagenet":
        return (img - np.float32(IMAGENET_MEAN_RGB)) / np.float32(IMAGENET_STD_RGB)
    if normalize == "bgr_mean":
        return img[:, :, ::-1] - np.float32(BGR_MEAN)
    raise ValueError(f"{NAME}: normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")


def pad_batch(images: Sequence[np.ndarray], multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Stack H x W x 3 float arrays into an N x 3 x H' x W' array, zero-padded at the bottom/right to a
    common size rounded up to ``multiple``."""
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    height = -(-height // multiple) * multiple
    width = -(-width // multiple) * multiple
    out = np.zeros((len(images), 3, height, width), dtype=np.float32)
    for i, im in enumerate(images):
        out[i, :, : im.shape[0], : im.shape[1]] = im.transpose(2, 0, 1)
    return out


# --------------------------------------------------------------------------------------- torch helpers

def _require_torch() -> None:
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(f"the {NAME} detector needs torch and torchvision ({err}); "
                          f"install them with: {INSTALL_HINT}") from err
    try:
        import retinaface.network  # noqa: F401
    except ImportError as err:
        raise MissingExtraError(f"the {NAME} detector needs {PACKAGE} ({err}); install it with: {INSTALL_HINT}") from err


def hub_weights_path() -> str:
    """Where torch hub keeps the package's weights: ``torch.hub.get_dir()/checkpoints/<WEIGHTS_FILE>``. Without
    torch imported, the same rule as ``torch.hub.get_dir`` ($TORCH_HOME/hub, else $XDG_CACHE_HOME/torch/hub, else
    ~/.cache/torch/hub), so looking for the file does not import torch (~3 CPU-s)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        hub = torch.hub.get_dir()
    else:
        cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
        hub = os.path.join(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch"))), "hub")
    return os.path.join(hub, "checkpoints", WEIGHTS_FILE)


def _missing_weights_message(extra: str = "") -> str:
    target = hub_weights_path()
    return (f"{NAME}: no weights found{extra}. Fetch {WEIGHTS_FILE} from {WEIGHTS_URL} and put it at {target} "
            f"(the torch hub cache), or pass weights=/path/to/file; or allow a download with download=true.")


def resolve_weights(weights: str | None, download: bool) -> str:
    """The weights file to load: explicit path, else torch hub cache, else (if allowed) a download."""
    if weights is not None:
        path = os.path.expanduser(weights)
        if not os.path.isfile(path):
            raise MissingFileError(f"{NAME}: weights file {weights!r} does not exist. The package's ResNet-50 "
                                    f"weights are {WEIGHTS_FILE} from {WEIGHTS_URL}.")
        return path
    cached = hub_weights_path()
    if os.path.isfile(cached):
        return cached
    if not download:
        raise MissingFileError(_missing_weights_message())
    import torch

    os.makedirs(os.path.dirname(cached), exist_ok=True)
    try:
        torch.hub.download_url_to_file(WEIGHTS_URL, cached, progress=False)
    except Exception as err:  # offline, DNS, HTTP error: same actionable message
        raise MissingFileError(_missing_weights_message(f" and the download failed ({err})")) from err
    return cached


def load_state_dict(path: str) -> dict[str, Any]:
    """Read a RetinaFace state dict from ``path``: a torch file, a Lightning checkpoint (``state_dict`` key),
    or a zip holding exactly one torch file (the package's release format). Strips the ``module.``
    (DataParallel) and ``model.`` (Lightning) key prefixes. Tensors only (``weights_only=True``)."""
    import torch

    def _load(fh: Any) -> Any:
        return torch.load(fh, map_location="cpu", weights_only=True)

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                members = [m for m in zf.infolist() if not m.is_dir()]
                # torch.save's own format is a zip with a data.pkl record; the package's release is a zip
                # around one such file.
                if len(members) == 1 and not members[0].filename.endswith("data.pkl"):
                    obj = _load(io.BytesIO(zf.read(members[0])))
                else:
                    obj = _load(path)
        else:
            obj = _load(path)
    except Exception as err:
        raise ValueError(f"{NAME}: cannot read weights file {path!r}: {err}") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{NAME}: weights file {path!r} does not hold a state dict (got {type(obj).__name__})")
    out = {}
    for key, value in obj.items():
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        out[key] = value
    return out


def build_network(network: str = "resnet50") -> Any:
    """An untrained ``retinaface.network.RetinaFace`` configured as the package's ``Model`` does."""
    import warnings

    from retinaface.network import RetinaFace

    if network != "resnet50":
        raise ValueError(f"{NAME}: network must be one of {', '.join(NETWORKS)}, got {network!r}")
    with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" (pretrained=False here)
        warnings.simplefilter("ignore", UserWarning)
        return RetinaFace(name="Resnet50", pretrained=False, return_layers=dict(RETURN_LAYERS),
                          in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS)


@functools.lru_cache(maxsize=16)
def priors_for(height: int, width: int) -> Any:
    """Prior boxes (cx, cy, w, h) normalised to an input of ``height`` x ``width``, from the package."""
    from retinaface.prior_box import priorbox

    return priorbox(min_sizes=[list(m) for m in MIN_SIZES], steps=list(STEPS), clip=False,
                    image_size=(height, width))


def decode_detections(loc: Any, conf: Any, priors: Any, input_hw: tuple[int, int], threshold: float,
                      nms_iou: float, top_k: int = PRE_NMS_TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """One image's raw head outputs -> (boxes xyxy in input pixels, scores), thresholded and NMS'd.

    ``loc`` (P, 4) regression, ``conf`` (P, 2) logits, ``priors`` (P, 4) normalised (cx, cy, w, h)."""
    import torch
    from retinaface.box_utils import decode
    from torchvision.ops import nms

    height, width = input_hw
    priors = priors.to(loc.device)
    scores = torch.softmax(conf.float(), dim=-1)[:, 1]
    keep = torch.where(scores > threshold)[0]
    if keep.numel() > top_k:
        keep = keep[torch.topk(scores[keep], top_k).indices]
    boxes = decode(loc[keep].float(), priors[keep], list(VARIANCES))
    boxes = boxes * torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    scores = scores[keep]
    kept = nms(boxes, scores, nms_iou)
    return boxes[kept].cpu().numpy().astype(np.float64), scores[kept].cpu().numpy().astype(np.float64)


# -------------------------------------------------------------------------------------------- detector

class RetinaFaceDetector(MultiPassDetector):
    """RetinaFace ResNet-50 faces. See the module docstring for the spec and the weights lookup."""

    name = NAME
    label = FACE

    def __init__(self, **options: Any) -> None:
        o = ARGS.parse(options, NAME)
        self.network, self.threshold = o["network"], o["threshold"]
        self.nms_iou = o["nms"]
        self.merge_iou = self.nms_iou
        self.preset = o["preset"]
        passes = PRESETS[self.preset]
        side = o["max_side"]
        if side is not None:  # 0: native size in every pass
            passes = tuple(Pass(p.grid, (side * (2 if p.scale > 1 else 1)) if side else None, p.scale)
                           for p in passes)
        self.passes = passes
        self.margin, self.min_size, self.batch_size = o["margin"], o["min_size"], o["batch_size"]
        self.device, self.threads, self.normalize = o["device"], o["threads"], o["normalize"]
        weights, download = o["weights"], o["download"]
        if not download:  # a missing weights file is found without importing torch (~3 CPU-s): the audit's probe
            self.weights_path = resolve_weights(weights, download)
        _require_torch()
        import torch

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"{NAME}: device {options.get('device')!r} requested but torch sees no CUDA device")
        if self.threads:
            torch.set_num_threads(self.threads)  # process-wide: one model per Beam worker process
        if download:
            self.weights_path = resolve_weights(weights, download)
        model = build_network(self.network)
        state = load_state_dict(self.weights_path)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise ValueError(f"{NAME}: weights file {self.weights_path!r} does not fit RetinaFace "
                             f"{self.network}: {str(err)[:500]}") from err
        self._model = model.to(self.device).eval()

    def identity(self) -> dict[str, Any]:
        return {
            "name": NAME,
            "label": FACE,
            "package": PACKAGE,
            "package_version": package_version(PACKAGE),
            "runtime": "torch " + str(package_version("torch")),
            "network": self.network,
            "weights": os.path.basename(self.weights_path),
            "weights_sha256": file_sha256(self.weights_path),
            "threshold": self.threshold,
            "nms": self.nms_iou,
            "margin": self.margin,
            "min_size": self.min_size,
            "preset": self.preset,
            "passes": [p.to_dict() for p in self.passes],
            "normalize": self.normalize,
            "batch_size": self.batch_size,
        }

    # one pass on one image (or tile): MultiPassDetector.boxes_scores calls this for every pass
    def _run_one(self, image_rgb: np.ndarray, p: Pass) -> tuple[np.ndarray, np.ndarray]:
        return self._forward([image_rgb], p)[0]

    def _forward(self, images_rgb: Sequence[np.ndarray], p: Pass) -> list[tuple[np.ndarray, np.ndarray]]:
        """One forward pass over images resized for pass ``p`` and padded to their common size; per image
        (boxes xyxy in that image's pixels, scores) after the score threshold and NMS."""
        import cv2
        import torch

        sizes, inputs = [], []
        for image in images_rgb:
            h, w = image.shape[:2]
            rh, rw = pass_size(h, w, p)
            if (rh, rw) != (h, w):
                image = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR)
            sizes.append(((rh, rw), (h, w)))
            inputs.append(normalize_image(image, self.normalize))
        batch = pad_batch(inputs)
        input_hw = (batch.shape[2], batch.shape[3])
        priors = priors_for(*input_hw)
        with torch.inference_mode():
            loc, conf, _landmarks = self._model(torch.from_numpy(batch).to(self.device))
        if loc.shape[1] != priors.shape[0]:
            raise RuntimeError(f"{NAME}: network gave {loc.shape[1]} anchors for a {input_hw} input but the "
                               f"prior boxes number {priors.shape[0]}")
        results = []
        for i, (resized_hw, source_hw) in enumerate(sizes):
            boxes, scores = decode_detections(loc[i], conf[i], priors, input_hw, self.threshold, self.nms_iou)
            boxes = ops.map_boxes_to_source(boxes, resized_hw, source_hw)
            nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # boxes wholly in the padding
            results.append((boxes[nonempty], scores[nonempty]))
        return results

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Network input size of the first pass for a ``height`` x ``width`` image."""
        return padded(*pass_size(height, width, self.passes[0]))

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[Detection]]:
        for image in images_rgb:
            check_image(image)
        if self.batch_size == 1 or len(self.passes) != 1 or self.passes[0].grid != 1:
            return [self.detect(image) for image in images_rgb]
        groups: dict[tuple[int, int], list[int]] = {}
        out: list[list[Detection]] = [[] for _ in images_rgb]
        for index, image in enumerate(images_rgb):
            if self.windows(image.shape[1], image.shape[0], self.passes[0]) is not None:
                out[index] = self.detect(image)  # searched in tiles (detectors.tiling): not batched
            else:
                groups.setdefault(self.padded_size(*image.shape[:2]), []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                results = self._forward([images_rgb[i] for i in chunk], self.passes[0])
                for index, (boxes, scores) in zip(chunk, results):
                    out[index] = self._finish(images_rgb[index], boxes, scores)
        return out

    def _finish(self, image_rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[Detection]:
        """What MultiPassDetector.detect does after a single pass: merge (NMS on the clipped boxes), threshold,
        min_size, margin, records -- so batched and per-image results are identical."""
        boxes, scores = ops.merge_passes([(boxes, scores)], self.merge_iou)
        keep = scores >= self.threshold
        boxes, scores = ops.drop_small(boxes[keep], scores[keep], self.min_size)
        h, w = image_rgb.shape[:2]
        return to_detections(ops.expand_boxes(boxes, self.margin, w, h), scores, self.label, self.name)


def _check() -> Any:
    """Installed, and weights in the torch hub cache (else it needs weights=PATH or download=true)."""
    needs = needs_modules("torch", "torchvision", "retinaface", hint=INSTALL_HINT)
    if not needs.ok:
        return needs
    if os.path.isfile(hub_weights_path()):
        return available()
    return unavailable(f"no weights in the torch hub cache ({hub_weights_path()}): pass weights=PATH, "
                       "or download=true")


PLUGIN = Plugin("detector", NAME, RetinaFaceDetector, ARGS, check=_check, tags=(FACE,),
                summary="RetinaFace ResNet-50 faces on torch (retinaface-pytorch; weights via torch hub)")
