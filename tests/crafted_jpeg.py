"""JPEGs crafted to carry bytes where a published image must hold none (issue "Safe builds" §2)."""
from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from veilset.release import jpeg

SECRET = b"SECRET-PAYLOAD-7f3a9c"


def clean_jpeg(width: int = 160, height: int = 120) -> bytes:
    """A clean baseline 4:2:0 JPEG (component ids 1, 2, 3): qualifies for the lossless fast path."""
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.stack([xx * 1.5, yy * 2, (xx + yy) * 0.9], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _insert_before_sof(data: bytes, extra: bytes) -> bytes:
    sof = next(s for s in jpeg.iter_segments(data) if s.marker in jpeg.SOF_MARKERS)
    return data[:sof.offset] + extra + data[sof.offset:]


def crafted() -> dict[str, bytes]:
    """name -> JPEG bytes; every one carries ``SECRET`` (or padding) somewhere it may not be published."""
    base = clean_jpeg()
    return {
        "dnl": _insert_before_sof(base, _segment(0xDC, b"\x00\x78" + SECRET)),
        "trailing": base + SECRET,
        "between_segments": _insert_before_sof(base, SECRET),
        "fill_bytes": _insert_before_sof(base, b"\xff" * 9),
        "unknown_marker": _insert_before_sof(base, _segment(0xF1, SECRET)),
        "com": _insert_before_sof(base, _segment(jpeg.COM, SECRET)),
        "app9": _insert_before_sof(base, _segment(0xE9, SECRET)),
    }
