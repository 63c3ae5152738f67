"""Beam ``ModelHandler`` for mask generators: one generator per worker process, one image per call.

Example = H x W x 3 uint8 RGB array (the anonymized image); inference = ``list[MaskAnnotation]``. The graph
wraps it in ``KeyedModelHandler`` (key = the image record).
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from veilset.segmentation.base import MaskAnnotation, MaskGenerator
from veilset.segmentation.registry import MASKS, build_mask_generator
from veilset.segmentation.spec import MaskSpec

DEVICES = ("cpu", "cuda")


def _with_device(spec: str, device: str | None) -> str:
    """Add ``device=...`` to the spec's options for generators that take one (SAM); others ignore --device."""
    if device is None:
        return spec
    parsed = MaskSpec.parse(spec)
    if "device" not in MASKS.get(parsed.name).args.names:
        return spec
    options = dict(parsed.options)
    options.setdefault("device", device)
    return str(MaskSpec(parsed.name, parsed.positional, tuple(options.items())))


class MaskGeneratorModelHandler(ModelHandler[np.ndarray, PredictionResult, MaskGenerator]):
    def __init__(self, spec: str, *, device: str | None = None) -> None:
        if device is not None and device not in DEVICES and not str(device).startswith("cuda:"):
            raise ValueError(f"--device: expected one of {', '.join(DEVICES)} or cuda:N, got {device!r}")
        parsed = MaskSpec.parse(spec)  # validate the grammar now, on the launcher
        if parsed.name == "none":
            raise ValueError("mask generator 'none' has no model handler; skip the masks stage instead")
        self._spec = _with_device(spec, device)
        self._device = device
        super().__init__()

    @property
    def spec(self) -> str:
        return self._spec

    def load_model(self) -> MaskGenerator:
        generator = build_mask_generator(self._spec)
        assert generator is not None
        return generator

    def run_inference(self, batch: Sequence[np.ndarray], model: MaskGenerator,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        return [PredictionResult(example=image, inference=list(model.generate(image))) for image in batch]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"max_batch_size": 1}

    def share_model_across_processes(self) -> bool:
        # One GPU copy of SAM shared by the worker processes of a machine; CPU generators load per process.
        return bool(self._device and str(self._device).startswith("cuda"))

    def get_metrics_namespace(self) -> str:
        return "veilset_masks"


__all__ = ["MaskGeneratorModelHandler", "MaskAnnotation"]
