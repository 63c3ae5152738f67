"""Assertions that hold on every CPU.

Detector outputs are computed by kernels that differ by CPU family (AVX2, AVX-512, VNNI, ARM): fp32 sums in another
order, and any int8 model not built with 7-bit weights saturates on AVX2 (detectors/quantize.py). Scores of real
faces move by a few hundredths at most, but the low-score background peaks (0.05-0.3 on the package photos: int8 and
fp32 already disagree there) may cross the 0.1 threshold one way or the other. So tests count *confident*
detections (score >= CONFIDENT) exactly, and never the boxes near the threshold.
"""
from __future__ import annotations

CONFIDENT = 0.5


def confident(detections, floor: float = CONFIDENT):
    return [d for d in detections if d.score >= floor]
