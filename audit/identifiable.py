"""Is an image area still identifiable? Plates: does text recognition read a plate number in it. Faces: is there
more facial detail in it than the build's anonymizer can leave.

Plates -- ``PlateReader`` (``veilset.detectors.plate_text``, which the build's ``plates`` detector uses too):
PP-OCRv4 text recognition. A plate "reads" when ``Reading.reads`` holds (enough confident letters/digits, one a
digit); ``Reading.looks_like_plate`` is the stricter test of the residual scan, whose candidates include time
stamps, signs and phone numbers.

Faces -- ``face_detail``: the build's pixelation keeps about 4 x 4 noisy block means of a face box (block = 1/6
of the enlarged region's short side, Gaussian-blurred with sigma = block/3, plus per-pixel noise). What identifies
a face -- eyes, brows, nostrils, mouth -- is structure finer than that. The measure: the face box in grey, minus
its reconstruction from a 12 x 12 grid (area-averaged, bicubic back: this holds all of a 4 x 4-block image),
low-passed at 1/48 of the box's short side (>= 0.8 px; pixel and JPEG noise do not count), as an RMS in grey
levels. On the calibration builds every anonymized face box >= 24 px stays at or below 2.53, every original face
>= 24 px is at or above 3.92; the threshold 3.2 sits between. Boxes under ``FACE_MIN_SIDE`` (24 px) are not judged:
there the anonymizer's noise and small real faces overlap (16-24 px: anonymized up to 1.80, originals from 1.72).
The calibration figures are in ``CALIBRATION`` (and in every audit report).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from veilset.detectors.plate_text import (PLATE_LENGTH, PLATE_LIKE_MIN_CHARS, PLATE_MAX_LETTER_RUN,  # noqa: F401
                                          PLATE_MIN_CHAR_PROB, PLATE_MIN_CHARS, PlateReader, Reading, crop)

# Calibrated in benchmarks/audit_findings.py (see its docstring and the README's Audit section).
FACE_MIN_DETAIL = 3.2
FACE_MIN_SIDE = 24  # px: smaller face boxes are not judged (see face_detail)
RESIDUAL_FACE_THRESHOLD = 0.6  # the residual scan's CenterFace fallback (audit/residual.py)


# ------------------------------------------------------------------------------------------------ faces
GRID = 12  # the smooth reconstruction: a 12 x 12 grid over the face box (the anonymizer leaves ~4 x 4 blocks)
DENOISE = 1.0 / 48.0  # low-pass of the detail, as a fraction of the face box's short side


def face_detail(pixels: np.ndarray, box_xyxy: Sequence[float]) -> float | None:
    """RMS (grey levels) of the face box's structure finer than an 8 x 8 grid and coarser than 1/48 of its
    size; None when the box is too small (< ``FACE_MIN_SIDE`` px) or empty."""
    patch = crop(pixels, box_xyxy)
    h, w = patch.shape[:2]
    if min(h, w) < FACE_MIN_SIDE:
        return None
    grey = cv2.cvtColor(np.ascontiguousarray(patch), cv2.COLOR_RGB2GRAY).astype(np.float32)
    coarse = cv2.resize(grey, (GRID, GRID), interpolation=cv2.INTER_AREA)
    smooth = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    sigma = max(0.8, DENOISE * min(h, w))
    detail = cv2.GaussianBlur(grey - smooth, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return float(np.sqrt(np.mean(detail ** 2)))


def face_identifiable(pixels: np.ndarray, box_xyxy: Sequence[float], min_detail: float = FACE_MIN_DETAIL) -> bool:
    detail = face_detail(pixels, box_xyxy)
    return detail is not None and detail >= min_detail


# ------------------------------------------------------------------------------------------------ calibration
# Measured by ``python benchmarks/audit_findings.py --calibrate`` on default builds (every default: CenterFace,
# ``plates``, pixelate, JPEG 90) of the 212 eval photos (../shared/eval faces + plates) and the 7 demo photos:
# the anonymized boxes as published, and the same boxes with the source pixels (what a failed anonymization
# would publish). Faces: ground-truth faces (eval faces) or detections >= 0.6 (elsewhere); plates: boxes on an
# annotated plate.
FACE_ANONYMIZED_MAX = 2.53  # highest facial detail of any anonymized face box >= FACE_MIN_SIDE
CALIBRATION: dict = {
    "measured_on": "default builds of the 212 eval photos and the 7 demo photos (benchmarks/audit_findings.py "
                   "--calibrate)",
    "face": {"min_side_px": FACE_MIN_SIDE, "min_detail": FACE_MIN_DETAIL,
             "anonymized_boxes": 263, "anonymized_max": FACE_ANONYMIZED_MAX,
             "original_faces": 75, "original_min": 3.92},
    "plate": {"min_chars": PLATE_MIN_CHARS, "min_char_prob": PLATE_MIN_CHAR_PROB, "needs_digit": True,
              "anonymized_boxes": 312, "anonymized_read": 0, "original_plates": 205, "original_read": 198},
    "residual_face": {"threshold": RESIDUAL_FACE_THRESHOLD, "non_face_score_max": 0.458, "gt_faces_24px": 73,
                      "gt_faces_scored": 61},
    "residual_plate": {"length": list(PLATE_LENGTH), "min_chars": PLATE_LIKE_MIN_CHARS,
                       "max_letter_run": PLATE_MAX_LETTER_RUN,
                       "original_plates": 205, "original_read_as_plate": 190},
}


def calibration_line(cal: dict) -> str:
    """One human sentence of the thresholds and the measurements behind them (for the HTML report)."""
    f, p, rf, rp = cal["face"], cal["plate"], cal["residual_face"], cal["residual_plate"]
    return (f"faces: identifiable when facial detail >= {f['min_detail']} grey levels on a box >= {f['min_side_px']} "
            f"px (anonymized boxes: max {f['anonymized_max']} of {f['anonymized_boxes']}; original faces: min "
            f"{f['original_min']} of {f['original_faces']}); plates: readable when text recognition reads >= "
            f"{p['min_chars']} letters/digits at >= {p['min_char_prob']:.0%} with a digit (anonymized plates read: "
            f"{p['anonymized_read']} of {p['anonymized_boxes']}; original plates: {p['original_read']} of "
            f"{p['original_plates']}); residual faces: score >= {rf['threshold']} (non-faces: max "
            f"{rf['non_face_score_max']}; ground-truth faces >= 24 px scored: {rf['gt_faces_scored']} of "
            f"{rf['gt_faces_24px']}); residual plates: a plate-like reading ({rp['length'][0]}-{rp['length'][1]} "
            f"characters, >= {rp['min_chars']} confident, letters and digits, no 4-letter word; original plates: {rp['original_read_as_plate']} of "
            f"{rp['original_plates']}). Measured on {cal['measured_on']}.")
