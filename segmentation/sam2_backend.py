"""``sam2:CONFIG:CHECKPOINT[:key=value,...]``: SAM 2's own automatic mask generator (package ``sam2``).

Optional: imported only when the spec names sam2 (``segmentation.sam.build_sam2`` checks the package first and
gives an install hint). Uses ``sam2.build_sam.build_sam2`` + ``SAM2AutomaticMaskGenerator`` (output_mode
``coco_rle``) with the library's own defaults unless overridden; ``max_mask_coverage`` (SA-1B's 95 % rule) is
applied here. Not exercised by the test suite (no sam2 package or checkpoint in CI).
"""
from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from veilset.segmentation.base import MaskAnnotation, check_rgb
from veilset.segmentation.sam import file_sha256, resolve_device, to_annotation
from veilset.segmentation.spec import convert_options, to_bool, to_float, to_int

_CONVERTERS = {
    "points_per_side": to_int, "points_per_batch": to_int, "pred_iou_thresh": to_float,
    "stability_score_thresh": to_float, "stability_score_offset": to_float, "mask_threshold": to_float,
    "box_nms_thresh": to_float, "crop_n_layers": to_int, "crop_nms_thresh": to_float,
    "crop_overlap_ratio": to_float, "crop_n_points_downscale_factor": to_int, "min_mask_region_area": to_int,
    "use_m2m": to_bool, "multimask_output": to_bool,
}


class Sam2MaskGenerator:
    name = "sam2"

    def __init__(self, config: str, checkpoint: str, *, device: Optional[str] = None,
                 max_mask_coverage: str | float = 0.95, **options: Any) -> None:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2

        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f"sam2: checkpoint {checkpoint!r} not found (weights are never downloaded)")
        self.settings = convert_options(options, _CONVERTERS, "sam2")
        self.max_mask_coverage = to_float("max_mask_coverage", max_mask_coverage)
        if not 0.0 < self.max_mask_coverage <= 1.0:
            raise ValueError(f"sam2: max_mask_coverage must be in (0, 1], got {self.max_mask_coverage!r}")
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
