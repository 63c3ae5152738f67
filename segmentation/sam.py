"""SAM backends: ``sam:MODEL_TYPE:CHECKPOINT[:key=value,...]`` and ``sam2:CONFIG:CHECKPOINT[:...]``.

Model types: ``vit_h``, ``vit_l``, ``vit_b`` (segment_anything's architectures) and ``vit_tiny``: a small
architecture of the same classes (ViT embed 64, depth 2) used by the tests and the benchmark with randomly
initialised weights saved to a file; it loads through exactly the same checkpoint code path. Checkpoints are
never downloaded: a missing path is an error.

Presets (``preset=``): ``sa1b`` = SA-1B's generation settings (SAM paper, App. B): 32 x 32 grid, 2 crop layers
(2 x 2 and 4 x 4 windows with 16 x 16 and 8 x 8 grids), predicted IoU >= 0.88, stability >= 0.95, box NMS 0.7
within and across crops, components and holes < 100 px removed, masks covering >= 95 % of the image dropped.
``default`` = ``SamAutomaticMaskGenerator``'s defaults. Every knob can be overridden (``key=value``).
``impl=fast`` (default) is our generator (``segmentation.amg``), ``impl=stock`` the library's, for comparison.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import Any, Optional

import numpy as np

from veilset.plugins import Arg, Args, MissingExtraError, MissingFileError, Plugin, needs_modules
from veilset.segmentation.base import MaskAnnotation, check_rgb

MODEL_TYPES = ("vit_h", "vit_l", "vit_b", "vit_tiny")
INSTALL_HINT = "pip install 'veilset[sam]' (torch, torchvision, segment-anything)"


_PRESET_DEFAULT = "(default: the preset's)"
SETTING_ARGS = Args(
    Arg("points_per_side", "int", None, f"prompt grid side {_PRESET_DEFAULT}", lo=1),
    Arg("points_per_batch", "int", None, f"prompts per decoder call {_PRESET_DEFAULT}", lo=1),
    Arg("pred_iou_thresh", "float", None, f"least predicted IoU {_PRESET_DEFAULT}", lo=0.0, hi=1.0),
    Arg("stability_score_thresh", "float", None, f"least stability score {_PRESET_DEFAULT}", lo=0.0, hi=1.0),
    Arg("stability_score_offset", "float", None, f"logit offset of the stability score {_PRESET_DEFAULT}"),
    Arg("box_nms_thresh", "float", None, f"box NMS within a crop {_PRESET_DEFAULT}", lo=0.0, hi=1.0),
    Arg("crop_n_layers", "int", None, f"crop layers (0: the whole image only) {_PRESET_DEFAULT}", lo=0),
    Arg("crop_nms_thresh", "float", None, f"box NMS across crops {_PRESET_DEFAULT}", lo=0.0, hi=1.0),
    Arg("crop_overlap_ratio", "float", None, f"crop overlap {_PRESET_DEFAULT}", lo=0.0, hi=1.0),
    Arg("crop_n_points_downscale_factor", "int", None, f"grid shrink per crop layer {_PRESET_DEFAULT}", lo=1),
    Arg("min_mask_region_area", "int", None, f"remove holes/islands smaller than this {_PRESET_DEFAULT}", lo=0),
    Arg("max_mask_coverage", "float", None, f"drop masks covering this fraction or more {_PRESET_DEFAULT}", gt=0.0,
        hi=1.0),
)


@dataclass(frozen=True)
class AmgSettings:
    """SamAutomaticMaskGenerator's knobs (library defaults) plus SA-1B's coverage filter."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    max_mask_coverage: float = 1.0  # drop masks covering >= this fraction of the image (1.0: keep all)

    def __post_init__(self) -> None:
        for arg in SETTING_ARGS:  # ranges: SETTING_ARGS, the one list the spec strings are checked against too
            object.__setattr__(self, arg.name, arg.parse(getattr(self, arg.name)))

    def library_kwargs(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("max_mask_coverage")
        return d


PRESETS: dict[str, AmgSettings] = {
    "default": AmgSettings(),
    "sa1b": AmgSettings(crop_n_layers=2, crop_n_points_downscale_factor=2, min_mask_region_area=100,
                        max_mask_coverage=0.95),
}



def _preset_option(value: Any) -> str:
    text = str(value).strip()
    if text not in PRESETS:
        raise ValueError(f"sam: unknown preset {text!r}; available: {', '.join(sorted(PRESETS))}")
    return text


ARGS = Args(
    Arg("preset", "choice", "sa1b", "generation settings: sa1b (SA-1B's) or default (the library's)",
        choices=tuple(sorted(PRESETS)), convert=_preset_option),
    Arg("device", "text", None, "auto, cpu, cuda or cuda:N (default auto: cuda when present)"),
    Arg("impl", "choice", "fast", "fast: veilset's generator (same masks); stock: the library's",
        choices=("fast", "stock")),
    Arg("img_size", "int", None, "vit_tiny only: input size, a multiple of 64", lo=64),
    Arg("bf16", "bool", False, "GPU only: image encoder under bfloat16 autocast (faster, not identical)"),
    Arg("compile", "bool", False, "GPU only: torch.compile the image encoder"),
    Arg("upscale_chunk", "int", 16, "masks upscaled per chunk", lo=1),
    *SETTING_ARGS,
)


def _require_torch():
    try:
        import torch  # noqa: F401
        import segment_anything  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"the sam mask generator needs torch and segment-anything: {INSTALL_HINT}") from exc


def resolve_device(device: Optional[str]) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device == "cuda" or str(device).startswith("cuda:"):
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"sam: device {device!r} requested but CUDA is not available")
        return str(device)
    raise ValueError(f"sam: device must be auto, cpu, cuda or cuda:N, got {device!r}")


def build_tiny_sam(img_size: int = 1024):
    """A small SAM from segment_anything.modeling classes (tests/benchmarks; random init unless loaded)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    if img_size < 64 or img_size % 64:
        raise ValueError(f"sam: vit_tiny img_size must be a multiple of 64, got {img_size!r}")
    dim, patch = 64, 16
    return Sam(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=64, img_size=img_size, mlp_ratio=2,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), num_heads=2,
                                      patch_size=patch, qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=(1,), window_size=8, out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(img_size // patch, img_size // patch),
                                     input_image_size=(img_size, img_size), mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3,
                                 transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=128,
                                                               num_heads=2),
                                 transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=64),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


_RANDOM_LOGIT_SCALE = 100.0  # untrained: mask logits within +-0.2; x100: a few units, like a trained SAM


def random_sam(model_type: str = "vit_tiny", seed: int = 0, img_size: Optional[int] = None):
    """A SAM architecture with seeded random weights, for tests and benchmarks (never for a release).

    PyTorch's default initialisation under ``torch.manual_seed(seed)`` (inside ``fork_rng``, so the caller's
    RNG state is untouched), then weight matrices redrawn N(0, 1/fan_in) from a generator seeded the same way:
    the same seed gives the same model in any process. Untrained decoders give mask
    logits within +-0.2 and predicted IoUs around 0, so nothing would pass SAM's filters: the last hypernetwork
    layers are scaled x100 (logits of a few units, like a trained SAM's) and the IoU head's output bias is
    shifted by +0.7 (predicted IoUs around 0.9, so SAM's 0.88 filter keeps some and drops some).
    """
    import torch
    from segment_anything import sam_model_registry

    if model_type not in MODEL_TYPES:
        raise ValueError(f"sam: unknown model type {model_type!r}; available: {', '.join(MODEL_TYPES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tiny_sam(img_size or 1024) if model_type == "vit_tiny" else sam_model_registry[model_type]()
        gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():  # matrices: N(0, 1/fan_in), a livelier start than the default init
            if param.dim() > 1:
                param.copy_(torch.randn(param.shape, generator=gen) * (1.0 / param.shape[-1]) ** 0.5)
        for mlp in model.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(_RANDOM_LOGIT_SCALE)
        model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(0.7)
    return model.eval()


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_sam(model_type: str, checkpoint: str, device: str = "cpu", img_size: Optional[int] = None):
    """Build the architecture and load the checkpoint's state dict (never downloads)."""
    _require_torch()
    import torch
    from segment_anything import sam_model_registry

    if model_type not in MODEL_TYPES:
        raise ValueError(f"sam: unknown model type {model_type!r}; available: {', '.join(MODEL_TYPES)}")
    if not checkpoint:
        raise ValueError("sam: a checkpoint path is required (sam:MODEL_TYPE:CHECKPOINT); weights are never "
                         "downloaded at run time")
    if not os.path.isfile(checkpoint):
        raise MissingFileError(f"sam: checkpoint {checkpoint!r} not found; download it yourself (e.g. "
                                f"sam_vit_b_01ec64.pth from the segment-anything README) and pass its path")
    if img_size is not None and model_type != "vit_tiny":
        raise ValueError(f"sam: img_size is only for vit_tiny (got img_size={img_size} for {model_type})")
    model = build_tiny_sam(img_size or 1024) if model_type == "vit_tiny" else sam_model_registry[model_type]()
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


class SamMaskGenerator:
    """SAM automatic masks as SA-1B annotations (``impl=fast``: our generator; ``impl=stock``: the library's)."""

    name = "sam"

    def __init__(self, model_type: str, checkpoint: str, *, model: Any = None, **options: Any) -> None:
        """Options: ``ARGS`` (``model``: an in-memory SAM instead of the checkpoint's, for tests/benchmarks)."""
        o = ARGS.parse(options, "sam")
        preset, device, impl, img_size = o["preset"], o["device"], o["impl"], o["img_size"]
        bf16, compile, upscale_chunk = o["bf16"], o["compile"], o["upscale_chunk"]
        settings = {k: o[k] for k in SETTING_ARGS.names if o[k] is not None}
        _require_torch()
        self.settings = replace(PRESETS[preset], **settings)
        self.preset, self.impl = preset, impl
        self.device = resolve_device(device)
        if (bf16 or compile) and not self.device.startswith("cuda"):
            raise ValueError(f"sam: bf16/compile are GPU-only (device {self.device!r})")
        if (bf16 or compile) and impl != "fast":
            raise ValueError("sam: bf16/compile need impl=fast")
        self.model_type, self.checkpoint = model_type, checkpoint
        self.bf16, self.compile, self.img_size = bf16, compile, img_size
        if model is None:
            model = load_sam(model_type, checkpoint, self.device, img_size)
            self.checkpoint_sha256 = file_sha256(checkpoint)
        else:  # an in-memory model (tests/benchmarks); identity says so
            self.checkpoint_sha256 = None
        self.model = model
        kwargs = self.settings.library_kwargs()
        if impl == "fast":
            import torch

            from veilset.segmentation.amg import FastSamAutomaticMaskGenerator

            self._amg = FastSamAutomaticMaskGenerator(model, upscale_chunk=upscale_chunk,
                                                      autocast_dtype=torch.bfloat16 if bf16 else None,
                                                      compile=compile, **kwargs)
        else:
            from segment_anything import SamAutomaticMaskGenerator

            self._amg = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **kwargs)

    def identity(self) -> dict[str, Any]:
        import segment_anything
        import torch

        return {
            "name": self.name,
            "model_type": self.model_type,
            "checkpoint": os.path.basename(self.checkpoint) if self.checkpoint else None,
            "checkpoint_sha256": self.checkpoint_sha256,
            "preset": self.preset,
            "settings": asdict(self.settings),
            "impl": self.impl,
            "bf16": self.bf16,
            "segment_anything": getattr(segment_anything, "__version__", "1.0"),
            "torch": torch.__version__,
        }

    def generate_raw(self, image_rgb: np.ndarray) -> list[dict[str, Any]]:
        """The generator's dicts (stock ``coco_rle`` format), before the coverage filter."""
        image = check_rgb(image_rgb, "sam")
        if image.shape[0] == 0 or image.shape[1] == 0:
            return []
        return self._amg.generate(image)

    def generate(self, image_rgb: np.ndarray) -> list[MaskAnnotation]:
        anns = self.generate_raw(image_rgb)
        if not anns:
            return []
        h, w = np.asarray(image_rgb).shape[:2]
        limit = self.settings.max_mask_coverage * h * w
        return [to_annotation(a) for a in anns if not (self.settings.max_mask_coverage < 1.0 and a["area"] >= limit)]


def to_annotation(ann: dict[str, Any]) -> MaskAnnotation:
    seg = ann["segmentation"]
    counts = seg["counts"]
    return MaskAnnotation(
        segmentation={"size": [int(v) for v in seg["size"]],
                      "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts)},
        bbox_xywh=tuple(float(v) for v in ann["bbox"]),
        area=int(ann["area"]),
        predicted_iou=float(ann["predicted_iou"]),
        stability_score=float(ann["stability_score"]),
        point_coords=tuple((float(p[0]), float(p[1])) for p in ann["point_coords"]),
        crop_box_xywh=tuple(float(v) for v in ann["crop_box"]),
    )


def build(positional: str, **options: Any) -> SamMaskGenerator:
    model_type, _, checkpoint = positional.partition(":")
    if not model_type or not checkpoint:
        raise ValueError(f"sam spec needs sam:MODEL_TYPE:CHECKPOINT, got {('sam:' + positional)!r}; model types: "
                         f"{', '.join(MODEL_TYPES)}")
    return SamMaskGenerator(model_type, checkpoint, **options)


PLUGIN = Plugin("mask generator", "sam", build, ARGS, positional="MODEL_TYPE:CHECKPOINT",
                check=lambda: needs_modules("torch", "torchvision", "segment_anything", hint=INSTALL_HINT,
                                            note="needs a checkpoint file: sam:vit_h|vit_l|vit_b:CHECKPOINT"),
                summary="Segment Anything automatic masks (SA-1B settings by default; checkpoints never downloaded)")
