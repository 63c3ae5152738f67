"""Encode the published JPEG with no metadata at all, and the lossless metadata-stripping fast path.

Pure (PIL + numpy; no Beam).

``encode_jpeg`` writes a baseline (SOF0), Huffman-optimised, 4:2:0 JPEG with PIL/libjpeg and then removes every
APPn and COM segment with ``release.jpeg`` -- libjpeg always writes a JFIF APP0 for YCbCr output and PIL has no
switch to turn it off. A JPEG without JFIF/Adobe markers whose three components have ids 1, 2, 3 is read as YCbCr
by every decoder (libjpeg's own rule), so dropping JFIF changes no pixel. Equal pixels give equal bytes with the
same libjpeg build (``PIL.features.version("jpg")``).
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, features

from veilset.release import jpeg
from veilset.pipeline.decode import DEFAULT_MAX_SHORT_SIDE, EXIF_ORIENTATION_TAG

DEFAULT_QUALITY = 90
SUBSAMPLING_420 = 2  # PIL's code for 4:2:0
OPTIMIZE = True  # optimised Huffman tables: ~5-10% smaller, still baseline, still deterministic


def _validate_quality(quality: int) -> None:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality must be an int in 1..100, got {quality!r}")


def encoder_identity() -> dict[str, object]:
    """What produced the JPEG bytes (for the manifest config): byte-identity holds for equal identities."""
    return {"encoder": "pillow", "pillow": Image.__version__, "libjpeg": features.version("jpg"),
            "subsampling": "4:2:0", "optimize": OPTIMIZE, "progressive": False}


def drop_segments(data: bytes, segments: list[jpeg.Segment]) -> bytes:
    """``data`` without the given header segments (everything else byte-identical)."""
    out = bytearray()
    pos = 0
    for seg in sorted(segments, key=lambda s: s.offset):
        out += data[pos:seg.offset]
        pos = seg.offset + seg.length
    out += data[pos:]
    return bytes(out)


def encode_jpeg(pixels: np.ndarray, *, quality: int = DEFAULT_QUALITY) -> bytes:
    """H x W x 3 uint8 RGB -> baseline JPEG bytes without any APPn or COM segment."""
    _validate_quality(quality)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be an H x W x 3 uint8 array, got "
                         f"{getattr(pixels, 'dtype', type(pixels))} {getattr(pixels, 'shape', '')}")
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"pixels must be at least 1x1, got shape {pixels.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(
        buf, "JPEG", quality=quality, subsampling=SUBSAMPLING_420, optimize=OPTIMIZE, progressive=False)
    data = buf.getvalue()
    out = drop_segments(data, jpeg.metadata_segments(data))
    return out


def strip_jpeg_metadata(data: bytes, *, max_short_side: int | None = DEFAULT_MAX_SHORT_SIDE) -> bytes | None:
    """Lossless fast path: the source JPEG minus its APPn/COM segments and anything after EOI, or ``None``.

    The result must pass ``release.jpeg.strict_violations`` (else ``None``: the image is re-encoded).

    Qualifies only a clean, single-scan baseline (SOF0) 8-bit JPEG with 3 components whose ids are 1, 2, 3
    (YCbCr without relying on a JFIF/Adobe marker), no Adobe colour transform other than YCbCr, no ICC profile
    (dropping it would change the colours a colour-managed viewer shows), EXIF orientation 1 (or absent) and a
    shortest side <= ``max_short_side`` (``None``: any size). The caller decides that nothing needs
    anonymizing. The result decodes to pixels identical to the source's.
    """
    try:
        segments = jpeg.iter_segments(data)
        frame = jpeg.frame_header(data, segments)
    except ValueError:
        return None
    if not frame.baseline or frame.precision != 8 or frame.component_ids != (1, 2, 3):
        return None
    if frame.width < 1 or frame.height < 1:  # height 0 means a DNL segment defines it
        return None
    if max_short_side is not None and min(frame.width, frame.height) > max_short_side:
        return None
    meta = [s for s in segments if jpeg.APP0 <= s.marker <= jpeg.APP15 or s.marker == jpeg.COM]
    for seg in meta:
        payload = seg.payload(data)
        if seg.name == "APP2" and payload.startswith(b"ICC_PROFILE\x00"):
            return None
        if seg.name == "APP14" and payload.startswith(b"Adobe") and len(payload) >= 12 and payload[11] != 1:
            return None  # transform 0 = RGB/CMYK stored as is, 2 = YCCK
    if _orientation(data) != 1:
        return None
    try:
        end = jpeg.scan_end(data, segments[-1])
    except ValueError:
        return None
    out = drop_segments(bytes(data[:end]), meta)
    # anything else the source carries (DNL, unknown markers, fill bytes, ...) sends it to the re-encoder
    return None if jpeg.strict_violations(out) else out


def _orientation(data: bytes) -> int:
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
            return int(im.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - unreadable EXIF: does not qualify for the fast path
        return -1
