"""``sam2:CONFIG:CHECKPOINT[:key=value,...]``: SAM 2's own automatic mask generator (package ``sam2``).

Optional: the ``sam2`` package is imported only when the spec names sam2 (``build`` checks the package first
and gives an install hint). Uses ``sam2.build_sam.build_sam2`` + ``SAM2AutomaticMaskGenerator`` (output_mode
``coco_rle``) with the library's own defaults unless overridden; ``max_mask_coverage`` (SA-1B's 95 % rule) is
applied here. Not exercised by the test suite (no sam2 package or checkpoint in CI).
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from veilset.plugins import Arg, Args, MissingExtraError, MissingFileError, Plugin, needs_modules
from veilset.segmentation.base import MaskAnnotation, check_rgb
from veilset.segmentation.sam import file_sha256, resolve_device, to_annotation

NAME = "sam2"
SAM2_HINT = "pip install 'git+https://github.com/facebookresearch/sam2.git' (package sam2)"
_LIBRARY = "(default: SAM2AutomaticMaskGenerator's)"
# Passed to SAM2AutomaticMaskGenerator only when given (the library's defaults otherwise).
LIBRARY_ARGS = Args(
    Arg("points_per_side", "int", None, f"prompt grid side {_LIBRARY}", lo=1),
    Arg("points_per_batch", "int", None, f"prompts per decoder call {_LIBRARY}", lo=1),
    Arg("pred_iou_thresh", "float", None, f"least predicted IoU {_LIBRARY}", lo=0.0, hi=1.0),
    Arg("stability_score_thresh", "float", None, f"least stability score {_LIBRARY}", lo=0.0, hi=1.0),
    Arg("stability_score_offset", "float", None, f"logit offset of the stability score {_LIBRARY}"),
    Arg("mask_threshold", "float", None, f"mask logit threshold {_LIBRARY}"),
    Arg("box_nms_thresh", "float", None, f"box NMS within a crop {_LIBRARY}", lo=0.0, hi=1.0),
    Arg("crop_n_layers", "int", None, f"crop layers {_LIBRARY}", lo=0),
    Arg("crop_nms_thresh", "float", None, f"box NMS across crops {_LIBRARY}", lo=0.0, hi=1.0),
    Arg("crop_overlap_ratio", "float", None, f"crop overlap {_LIBRARY}", lo=0.0, hi=1.0),
    Arg("crop_n_points_downscale_factor", "int", None, f"grid shrink per crop layer {_LIBRARY}", lo=1),
    Arg("min_mask_region_area", "int", None, f"remove holes/islands smaller than this {_LIBRARY}", lo=0),
    Arg("use_m2m", "bool", None, f"mask-to-mask refinement {_LIBRARY}"),
    Arg("multimask_output", "bool", None, f"three masks per prompt {_LIBRARY}"),
)
ARGS = Args(
    Arg("device", "text", None, "auto, cpu, cuda or cuda:N (default auto: cuda when present)"),
    Arg("max_mask_coverage", "float", 0.95, "drop masks covering this fraction of the image or more", gt=0.0,
        hi=1.0),
    *LIBRARY_ARGS,
)


class Sam2MaskGenerator:
    name = "sam2"

    def __init__(self, config: str, checkpoint: str, **options: Any) -> None:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2

        o = ARGS.parse(options, NAME)
        if not os.path.isfile(checkpoint):
            raise MissingFileError(f"sam2: checkpoint {checkpoint!r} not found (weights are never downloaded)")
        self.settings = {k: o[k] for k in LIBRARY_ARGS.names if o[k] is not None}
        self.max_mask_coverage, device = o["max_mask_coverage"], o["device"]
        self.device = resolve_device(device)
        self.config, self.checkpoint = config, checkpoint
        self.checkpoint_sha256 = file_sha256(checkpoint)
        model = build_sam2(config, checkpoint, device=self.device, apply_postprocessing=False)
        self._amg = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", **self.settings)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "config": self.config, "checkpoint": os.path.basename(self.checkpoint),
                "checkpoint_sha256": self.checkpoint_sha256, "settings": dict(self.settings),
                "max_mask_coverage": self.max_mask_coverage}

    def generate(self, image_rgb: np.ndarray) -> list[MaskAnnotation]:
        image = check_rgb(image_rgb, "sam2")
        h, w = image.shape[:2]
        if h == 0 or w == 0:
            return []
        limit = self.max_mask_coverage * h * w
        return [to_annotation(a) for a in self._amg.generate(image)
                if not (self.max_mask_coverage < 1.0 and a["area"] >= limit)]


def build(positional: str, **options: Any) -> Sam2MaskGenerator:
    config, _, checkpoint = positional.partition(":")
    if not config or not checkpoint:
        raise ValueError(f"sam2 spec needs sam2:CONFIG:CHECKPOINT, got {('sam2:' + positional)!r}")
    try:
        import sam2  # noqa: F401
    except ImportError as exc:
        raise MissingExtraError(f"mask generator sam2 needs the sam2 package: {SAM2_HINT}") from exc
    return Sam2MaskGenerator(config, checkpoint, **options)


PLUGIN = Plugin("mask generator", NAME, build, ARGS, positional="CONFIG:CHECKPOINT",
                check=lambda: needs_modules("torch", "sam2", hint=SAM2_HINT, note="needs sam2:CONFIG:CHECKPOINT"),
                summary="SAM 2's own automatic mask generator (package sam2; checkpoints never downloaded)")
