"""Beam ``ModelHandler`` for detectors: one detector per worker process, batches of RGB arrays of any sizes.

The pipeline wraps it in ``KeyedModelHandler`` (key = the image record, example = H x W x 3 uint8 RGB pixels)::

    keyed | RunInference(KeyedModelHandler(DetectorModelHandler("centerface")))
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from veilset.detectors.base import Detection, Detector, DetectorSpec, check_image


class DetectorModelHandler(ModelHandler[np.ndarray, PredictionResult, Detector]):
    """``RunInference`` handler for a detector spec (``"centerface:threshold=0.3"``; not ``"none"``)."""

    def __init__(self, spec: str, *, max_batch_size: int = 4, min_batch_size: int = 1) -> None:
        parsed = DetectorSpec.parse(spec)  # fail at graph construction, not on the worker
        if parsed.name == "none":
            raise ValueError("DetectorModelHandler needs a detector, got 'none' (skip RunInference instead)")
        if not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
        if not isinstance(min_batch_size, int) or not 1 <= min_batch_size <= max_batch_size:
            raise ValueError(f"min_batch_size must be in [1, max_batch_size={max_batch_size}], got {min_batch_size!r}")
        super().__init__()
        self._spec = str(parsed)
        self._max_batch_size = max_batch_size
        self._min_batch_size = min_batch_size

    @property
    def spec(self) -> str:
        return self._spec

    def load_model(self) -> Detector:
        from veilset.detectors.registry import build_detector

        model = build_detector(self._spec)
        if model is None:  # pragma: no cover - excluded in __init__
            raise ValueError(f"detector spec {self._spec!r} builds no detector")
        return model

    def run_inference(self, batch: Sequence[np.ndarray], model: Detector,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        if inference_args:
            raise ValueError(f"detectors take no inference_args, got {sorted(inference_args)}")
        images = list(batch)
        for image in images:
            check_image(image)
        results: list[list[Detection]] = model.detect_batch(images)
        if len(results) != len(images):
            raise RuntimeError(f"{self._spec}: detect_batch returned {len(results)} results for {len(images)} images")
        return [PredictionResult(example=image, inference=dets, model_id=self._spec)
                for image, dets in zip(images, results)]

    def get_num_bytes(self, batch: Sequence[np.ndarray]) -> int:
        return int(sum(np.asarray(x).nbytes for x in batch))

    def get_metrics_namespace(self) -> str:
        return "veilset_detector_" + self._spec.split(":", 1)[0]

    def batch_elements_kwargs(self) -> dict[str, Any]:
        return {"min_batch_size": self._min_batch_size, "max_batch_size": self._max_batch_size}
