"""Is an image area still identifiable? Plates: does text recognition read a plate number in it. Faces: is there
more facial detail in it than the build's anonymizer can leave.

Plates -- ``PlateReader``: PP-OCRv4 text recognition (``ch_PP-OCRv4_rec_infer.onnx`` from the
rapidocr-onnxruntime wheel, loaded by path like the build's ``pptext`` detector; 6,623 characters + space),
greedy CTC decoding with the probability of every decoded character. The crop is read as one line and, for
two-line plates (state name over the number), also as horizontal bands; the best reading counts. A plate
"reads" when at least ``PLATE_MIN_CHARS`` ASCII letters/digits are decoded with probability >=
``PLATE_MIN_CHAR_PROB`` and one of them is a digit (every plate number of the eval set but one has a digit; a sign
the plate detector boxed reads as a word). ``looks_like_plate`` is the stricter test of the residual scan, whose
candidates include time stamps, signs and phone numbers.

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

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

# Calibrated in benchmarks/audit_findings.py (see its docstring and the README's Audit section).
PLATE_MIN_CHARS = 3
PLATE_MIN_CHAR_PROB = 0.8
PLATE_LENGTH = (4, 9)  # letters/digits of a plate number (eval plates: 5-8), one more or less for OCR slips
PLATE_LIKE_MIN_CHARS = 4  # residual plates: confident letters/digits (a plate number has 5-8; one may be unsure)
PLATE_MAX_LETTER_RUN = 3  # eval plates: 199 of 206 have no run of 4 letters; EXIT, MILE, VIDEO on signs do
FACE_MIN_DETAIL = 3.2
FACE_MIN_SIDE = 24  # px: smaller face boxes are not judged (see face_detail)
RESIDUAL_FACE_THRESHOLD = 0.6  # the residual scan's CenterFace fallback (audit/residual.py)

REC_HEIGHT = 48
REC_MIN_WIDTH = 320
READ_BANDS = ((0.0, 1.0), (0.15, 0.85), (0.25, 1.0), (0.0, 0.6))  # vertical bands of a crop read as lines


def rec_model_path() -> str:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    hint = "pip install --no-deps rapidocr-onnxruntime"
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"plate text recognition ships in the rapidocr-onnxruntime wheel; install it with: {hint}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "ch_PP-OCRv4_rec_infer.onnx")
    if not os.path.isfile(path):
        raise ImportError(f"rapidocr-onnxruntime is installed but {path} is missing; reinstall it with: {hint}")
    return path


@dataclass(frozen=True)
class Reading:
    """What recognition read in one line: the text and each character's probability."""

    text: str
    probs: tuple[float, ...]

    def confident(self, min_prob: float = PLATE_MIN_CHAR_PROB) -> str:
        """The letters and digits read with at least ``min_prob``."""
        return "".join(c for c, p in zip(self.text, self.probs) if c.isalnum() and c.isascii() and p >= min_prob)

    def looks_like_plate(self) -> bool:
        """Reads like a plate number rather than a sign, a badge, a date or a phone number: 4 to 9 letters/digits
        in all, at least ``PLATE_LIKE_MIN_CHARS`` of them confident, letters and digits both, no run of 4
        confident letters (a word)."""
        raw = [c for c in self.text if c.isascii() and c.isalnum()]
        chars = self.confident()
        if not PLATE_LENGTH[0] <= len(raw) <= PLATE_LENGTH[1] or len(chars) < PLATE_LIKE_MIN_CHARS:
            return False
        if not (any(c.isdigit() for c in chars) and any(c.isalpha() for c in chars)):
            return False
        run = longest = 0
        for c in chars:
            run = run + 1 if c.isalpha() else 0
            longest = max(longest, run)
        return longest <= PLATE_MAX_LETTER_RUN

    def reads(self, min_chars: int = PLATE_MIN_CHARS, min_prob: float = PLATE_MIN_CHAR_PROB) -> bool:
        """At least ``min_chars`` confident letters/digits, one of them a digit (a plate number, not a word)."""
        chars = self.confident(min_prob)
        return len(chars) >= min_chars and any(c.isdigit() for c in chars)


class PlateReader:
    """PP-OCRv4 recognition with per-character probabilities (greedy CTC)."""

    def __init__(self, model: str | None = None, threads: int = 0) -> None:
        from veilset.detectors.base import file_sha256, ort_session

        self.model_path = model or rec_model_path()
        self._session = ort_session(("pprec", self.model_path), self.model_path, threads)
        meta = self._session.get_modelmeta().custom_metadata_map
        self.characters = ["<blank>"] + meta["character"].splitlines() + [" "]
        self._input = self._session.get_inputs()[0].name
        self.weights_sha256 = file_sha256(self.model_path)

    def identity(self) -> dict[str, Any]:
        return {"name": "pprec", "weights": os.path.basename(self.model_path),
                "weights_sha256": self.weights_sha256, "min_chars": PLATE_MIN_CHARS,
                "min_char_prob": PLATE_MIN_CHAR_PROB}

    def recognize(self, lines_rgb: Sequence[np.ndarray]) -> list[Reading]:
        """One ``Reading`` per RGB line crop (batched by similar width)."""
        out: list[Reading] = [Reading("", ())] * len(lines_rgb)
        ok = [i for i, im in enumerate(lines_rgb) if im.ndim == 3 and im.shape[0] >= 2 and im.shape[1] >= 2]
        for i in ok:
            blob = self._blob(lines_rgb[i])
            probs = self._session.run(None, {self._input: blob})[0][0]
            out[i] = self._decode(probs)
        return out

    def _blob(self, line_rgb: np.ndarray) -> np.ndarray:
        h, w = line_rgb.shape[:2]
        width = max(1, min(int(math.ceil(REC_HEIGHT * w / h)), 2048))
        resized = cv2.resize(np.ascontiguousarray(line_rgb[:, :, ::-1]), (width, REC_HEIGHT),
                             interpolation=cv2.INTER_LINEAR if width > w else cv2.INTER_AREA)
        padded = np.zeros((REC_HEIGHT, max(width, REC_MIN_WIDTH), 3), np.float32)
        padded[:, :width] = resized.astype(np.float32) / 127.5 - 1.0
        return padded.transpose(2, 0, 1)[None]

    def _decode(self, probs: np.ndarray) -> Reading:
        best = probs.argmax(axis=1)
        chars, conf = [], []
        prev = 0
        for t, k in enumerate(best):
            if k != 0 and k != prev:
                chars.append(self.characters[k] if k < len(self.characters) else "")
                conf.append(float(probs[t, k]))
            prev = k
        return Reading("".join(chars), tuple(conf))

    def read(self, crop_rgb: np.ndarray) -> Reading:
        """The best reading of a plate crop: as one line and as the bands in ``READ_BANDS`` (multi-line plates),
        the one with the most confident letters/digits."""
        h = crop_rgb.shape[0]
        lines = []
        for top, bottom in READ_BANDS:
            r0, r1 = int(round(top * h)), int(round(bottom * h))
            if r1 - r0 >= 2:
                lines.append(crop_rgb[r0:r1])
        readings = self.recognize(lines)
        return max(readings, key=lambda r: (r.reads(), len(r.confident()), sum(r.probs)), default=Reading("", ()))


def crop(pixels: np.ndarray, box_xyxy: Sequence[float], pad: float = 0.0) -> np.ndarray:
    """``box_xyxy`` (enlarged by ``pad`` of its size on every side) clipped to the image."""
    h, w = pixels.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    px, py = (x1 - x0) * pad, (y1 - y0) * pad
    c0, r0 = max(0, int(math.floor(x0 - px))), max(0, int(math.floor(y0 - py)))
    c1, r1 = min(w, int(math.ceil(x1 + px))), min(h, int(math.ceil(y1 + py)))
    return pixels[r0:max(r0, r1), c0:max(c0, c1)]


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
    "residual_face": {"threshold": RESIDUAL_FACE_THRESHOLD, "non_face_score_max": 0.48, "gt_faces_24px": 73, "gt_faces_scored": 60},
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
