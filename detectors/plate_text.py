"""Reading licence plates: PP-OCRv4 text recognition (``ch_PP-OCRv4_rec_infer.onnx`` from the rapidocr-onnxruntime
wheel, loaded by path like the ``pptext`` detector; 6,623 characters + space), greedy CTC decoding with the
probability of every decoded character. The build's ``plates`` detector keeps a text line that reads like a plate
number; the audit asks whether an anonymized plate still reads and whether a plate outside every region does.

A crop is read as one line and, for two-line plates (state name over the number), also as horizontal bands; the
best reading counts. ``Reading.reads``: at least ``PLATE_MIN_CHARS`` ASCII letters/digits decoded with probability
>= ``PLATE_MIN_CHAR_PROB`` and one of them a digit (every plate number of the eval set but one has a digit; a sign
reads as a word). ``Reading.looks_like_plate`` is the stricter test for text lines found anywhere in a photo,
which include time stamps, signs and phone numbers. Thresholds calibrated in benchmarks/audit_findings.py (see its
docstring and the README's Audit section).
"""
from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from veilset.detectors.base import file_sha256, ort_session

PLATE_MIN_CHARS = 3
PLATE_MIN_CHAR_PROB = 0.8
PLATE_LENGTH = (4, 9)  # letters/digits of a plate number (eval plates: 5-8), one more or less for OCR slips
PLATE_LIKE_MIN_CHARS = 4  # residual plates: confident letters/digits (a plate number has 5-8; one may be unsure)
PLATE_MAX_LETTER_RUN = 3  # eval plates: 199 of 206 have no run of 4 letters; EXIT, MILE, VIDEO on signs do

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
        return longest_letter_run(chars) <= PLATE_MAX_LETTER_RUN

    def reads(self, min_chars: int = PLATE_MIN_CHARS, min_prob: float = PLATE_MIN_CHAR_PROB) -> bool:
        """At least ``min_chars`` confident letters/digits, one of them a digit (a plate number, not a word)."""
        chars = self.confident(min_prob)
        return len(chars) >= min_chars and any(c.isdigit() for c in chars)


class PlateReader:
    """PP-OCRv4 recognition with per-character probabilities (greedy CTC)."""

    def __init__(self, model: str | None = None, threads: int = 0) -> None:
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

    def read_line(self, line_rgb: np.ndarray) -> Reading:
        """``line_rgb`` read as one line of text (a text detector's line: no bands)."""
        return self.recognize([line_rgb])[0]

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


def longest_letter_run(chars: str) -> int:
    """The longest run of consecutive letters in ``chars`` (a word has 4 or more; a plate number rarely)."""
    run = longest = 0
    for c in chars:
        run = run + 1 if c.isalpha() else 0
        longest = max(longest, run)
    return longest
