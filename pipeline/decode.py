"""Safe decoding of untrusted image bytes to upright 8-bit RGB, and the shortest-side resize policy.

Pure functions (PIL + numpy + cv2; no Beam). ``decode_image`` never lets an exception other than
``DecodeError`` escape for any byte string: every failure maps to a short snake_case ``reason`` that the
pipeline records as a reject (``decode:<reason>``).

Order of operations in ``decode_image``:
1. refuse empty input and anything PIL does not identify as one of ``ALLOWED_FORMATS`` (``not_an_image``);
2. read the pixel count from the *header* (``Image.open`` is lazy) and refuse more than ``max_pixels``
   (``decompression_bomb``) before a single pixel buffer is allocated;
3. decode the first frame (animated GIF/WebP/PNG, multi-page TIFF -> first frame/page); truncated data is an
   error (``truncated``): PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set;
4. convert every mode to 8-bit RGB (see ``_to_rgb8``): alpha is composited on white, 16-bit is scaled (not
   clipped), CMYK JPEGs honour Adobe's inverted polarity;
5. apply the EXIF orientation (tags 1..8) so that everything downstream sees the upright image. Orientation
   only permutes pixels, so doing it after the mode conversion is identical to doing it first.

Reasons: ``empty``, ``not_an_image`` (incl. text named .jpg and formats outside ``ALLOWED_FORMATS``),
``decompression_bomb`` (header pixel count, PNG text/ICC zip bombs, out of memory), ``truncated``, ``corrupt``,
``corrupt_metadata`` (EXIF that raises while parsing: which way is up is unknown), ``unsupported_mode``,
``too_small`` (0-pixel header), ``unsupported_configuration`` (someone set PIL's LOAD_TRUNCATED_IMAGES),
``unreadable`` (anything else).

Known simplifications: CMYK -> RGB is PIL's naive conversion (no ICC colour management); a CMYK JPEG without
an Adobe APP14 segment is read as plain (non-inverted) CMYK; embedded ICC profiles are otherwise ignored
(pixel values are published as stored, i.e. treated as sRGB).
"""
from __future__ import annotations

import io
import math
import warnings
import zlib

import cv2
import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError
# register exactly the plugins of ALLOWED_FORMATS (Image.open(formats=...) needs them loaded)
from PIL import (BmpImagePlugin, GifImagePlugin, JpegImagePlugin, MpoImagePlugin,  # noqa: F401
                 PngImagePlugin, TiffImagePlugin, WebPImagePlugin)

# Formats we accept (PIL format names). A phone JPEG carrying extra pictures (MPF) opens through "JPEG" as
# format "MPO"; its first picture is the photo.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP")
# PIL's own hard limit (2 x Image.MAX_IMAGE_PIXELS): decode refuses anything bigger, e.g. a 40000 x 40000 PNG.
DEFAULT_MAX_PIXELS = 178_956_970
DEFAULT_MAX_SHORT_SIDE = 1500  # SA-1B publishes images with the shortest side set to 1500 px
EXIF_ORIENTATION_TAG = 0x0112
WHITE = 255


class DecodeError(Exception):
    """An input that cannot be published. ``reason`` is short snake_case, ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def _validate_max_pixels(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")


def _validate_max_short_side(max_short_side: int | None) -> None:
    if max_short_side is None:
        return
    if isinstance(max_short_side, bool) or not isinstance(max_short_side, int) or max_short_side < 1:
        raise ValueError(f"max_short_side must be a positive int or None, got {max_short_side!r}")


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode untrusted bytes to an upright H x W x 3 uint8 RGB C-contiguous array.

    Raises ``DecodeError`` (and nothing else) for bad data; ``ValueError``/``TypeError`` only for a bad
    ``max_pixels`` or a non-bytes ``data`` (caller bugs). Note that PIL's own limit (``2 *
    Image.MAX_IMAGE_PIXELS``, = ``DEFAULT_MAX_PIXELS``) also applies: a larger ``max_pixels`` does not lift it.
    """
    return _decode(data, max_pixels=max_pixels, max_short_side=None)


def decode_resized(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                   max_short_side: int | None = DEFAULT_MAX_SHORT_SIDE, draft: bool = False) -> np.ndarray:
    """``resize_shortest_side(decode_image(data), max_short_side)``, optionally faster for large JPEGs.

    With ``draft=True`` a JPEG that will be downscaled by at least 2x is decoded by libjpeg at 1/2, 1/4 or 1/8
    scale (DCT-domain scaling, PIL ``Image.draft``) to a size whose shortest side is still >= ``max_short_side``,
    then area-resized as usual. The result has exactly the same shape as without draft but pixel values differ
    slightly (DCT scaling is not identical to area averaging; typically a few grey levels, see the tests), so it
    is off by default. Other formats ignore ``draft``.
    """
    _validate_max_short_side(max_short_side)
    pixels = _decode(data, max_pixels=max_pixels, max_short_side=max_short_side if draft else None)
    return resize_shortest_side(pixels, max_short_side)


def _decode(data: bytes, *, max_pixels: int, max_short_side: int | None) -> np.ndarray:
    _validate_max_pixels(max_pixels)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise DecodeError("empty", "0 bytes")
    if ImageFile.LOAD_TRUNCATED_IMAGES:  # someone flipped the global: we refuse to publish gray-filled images
        raise DecodeError("unsupported_configuration", "PIL ImageFile.LOAD_TRUNCATED_IMAGES is True")
    try:
        return _decode_unchecked(bytes(data), max_pixels=max_pixels, max_short_side=max_short_side)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError("decompression_bomb", str(exc)) from None
    except MemoryError as exc:
        raise DecodeError("decompression_bomb", f"out of memory while decoding: {exc}") from None
    except UnidentifiedImageError:
        # (never the file's bytes: rejects.jsonl is published, and a text file named .jpg may be anything)
        raise DecodeError("not_an_image", f"not one of {'/'.join(ALLOWED_FORMATS)}") from None
    except (EOFError,) as exc:
        raise DecodeError("truncated", str(exc) or "unexpected end of data") from None
    except zlib.error as exc:
        raise DecodeError("corrupt", f"zlib: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - hostile input: anything PIL raises becomes a reject
        raise DecodeError(_reason_for(exc), f"{type(exc).__name__}: {exc}") from None


def _reason_for(exc: Exception) -> str:
    text = str(exc).lower()
    if "truncated" in text or "premature end" in text or "unexpected end" in text or "not enough data" in text:
        return "truncated"
    if "decompressed data too large" in text:  # PNG text/ICC chunk zip bombs (PngImagePlugin.MAX_TEXT_CHUNK)
        return "decompression_bomb"
    if isinstance(exc, (SyntaxError, OSError, ValueError, IndexError, KeyError, TypeError)):
        return "corrupt"
    return "unreadable"


def _decode_unchecked(data: bytes, *, max_pixels: int, max_short_side: int | None) -> np.ndarray:
    with warnings.catch_warnings():
        # We enforce our own pixel limit, and hostile files make PIL warn ("Corrupt EXIF data", ...) once per
        # file: noise in a worker's log. (catch_warnings is process-global state; harmless if threads race.)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("ignore", UserWarning)
        return _decode_opened(Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS), max_pixels=max_pixels,
                              max_short_side=max_short_side)


def _decode_opened(im: Image.Image, *, max_pixels: int, max_short_side: int | None) -> np.ndarray:
    with im:
        width, height = im.size  # from the header: nothing decoded yet
        if width < 1 or height < 1:
            raise DecodeError("too_small", f"{width}x{height}")
        if width * height > max_pixels:
            raise DecodeError("decompression_bomb",
                              f"{width}x{height} = {width * height} pixels > max_pixels {max_pixels}")
        # Image.open sits on frame 0 (first frame of an animation, first page of a TIFF, the primary picture
        # of an MPO); we never ask for n_frames, which would walk the whole file.
        adobe = "adobe" in im.info
        fmt = im.format
        if max_short_side is not None and fmt in ("JPEG", "MPO") and min(width, height) >= 2 * max_short_side:
            scale = max_short_side / min(width, height)
            # PIL picks the largest 1/2^k reduction whose result is still >= the requested size
            im.draft(im.mode if im.mode in ("L", "CMYK") else "RGB",
                     (math.ceil(width * scale), math.ceil(height * scale)))
        im.load()
        orientation = _exif_orientation(im)  # after load: PNG may keep eXIf after the image data
        pixels = _to_rgb8(im, fmt=fmt, adobe=adobe)
    pixels = apply_orientation(pixels, orientation)
    return np.ascontiguousarray(pixels)


def _exif_orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8; 1 when absent or out of range. An unparseable EXIF block is a reject: we cannot
    know which way is up, and a sideways face can be missed by the detector."""
    try:
        exif = im.getexif()
        value = exif.get(EXIF_ORIENTATION_TAG, 1)
    except Exception as exc:  # noqa: BLE001
        raise DecodeError("corrupt_metadata", f"unreadable EXIF: {type(exc).__name__}: {exc}") from None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 1
    return value if 1 <= value <= 8 else 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1..8) upright (same result as ``ImageOps.exif_transpose``).

    Returns a view when possible; callers make it contiguous.
    """
    if orientation == 1:
        return pixels
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1, :]
    if orientation == 5:
        return pixels.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(pixels, 1)
    raise ValueError(f"EXIF orientation must be 1..8, got {orientation!r}")


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """out = rgb * a + 255 * (1 - a), exact integer rounding."""
    a = alpha.astype(np.uint32)[..., None]
    out = (rgb.astype(np.uint32) * a + WHITE * (255 - a) + 127) // 255
    return out.astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def _scale16(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by rounding v / 257 (so 65535 -> 255 and 257 -> 1)."""
    v = np.clip(values.astype(np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)


def _to_rgb8(im: Image.Image, *, fmt: str | None, adobe: bool) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode == "L":
        return _gray_to_rgb(np.asarray(im, dtype=np.uint8))
    if mode == "1":
        return _gray_to_rgb(np.asarray(im.convert("L"), dtype=np.uint8))
    if mode in ("RGBA", "RGBa", "LA", "La", "PA", "P"):
        if mode == "P" and "transparency" not in im.info and im.palette is not None \
                and im.palette.mode != "RGBA":
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint8)  # premultiplied modes are un-premultiplied
        return _composite_on_white(rgba[..., :3], rgba[..., 3])
    if mode.startswith("I;16"):
        return _gray_to_rgb(_scale16(np.asarray(im)))
    if mode == "I":
        values = np.asarray(im)
        if values.size and (values.min() < 0 or values.max() > 255):
            return _gray_to_rgb(_scale16(values))  # 32-bit ints: treat as 16-bit range, clip outside it
        return _gray_to_rgb(values.astype(np.uint8))
    if mode == "F":
        values = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        if values.size and values.min() >= 0.0 and values.max() <= 1.0:
            values = values * 255.0  # normalised float image
        return _gray_to_rgb(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    if mode == "CMYK":
        if fmt in ("JPEG", "MPO") and not adobe:
            # PIL assumes Adobe's inverted polarity for every CMYK JPEG; without an Adobe APP14 segment the
            # data is plain CMYK, so undo PIL's inversion first.
            im = Image.fromarray(255 - np.asarray(im, dtype=np.uint8), "CMYK")
        return np.asarray(im.convert("RGB"), dtype=np.uint8)  # naive CMYK->RGB (no ICC colour management)
    try:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)  # YCbCr, LAB, HSV, I;16 variants...
    except Exception as exc:  # noqa: BLE001
        raise DecodeError("unsupported_mode", f"mode {mode!r}: {exc}") from None


def resize_shortest_side(pixels: np.ndarray,
                         max_short_side: int | None = DEFAULT_MAX_SHORT_SIDE) -> np.ndarray:
    """Downscale so that ``min(h, w) == max_short_side`` when it is larger; never upscale; ``None`` disables.

    Area interpolation (cv2.INTER_AREA), deterministic. The long side is rounded to the nearest pixel
    (at least 1). Returns ``pixels`` itself (no copy) when nothing needs doing.
    """
    _validate_max_short_side(max_short_side)
    if not isinstance(pixels, np.ndarray) or pixels.ndim not in (2, 3):
        raise ValueError(f"pixels must be an H x W or H x W x C array, got {getattr(pixels, 'shape', pixels)!r}")
    h, w = pixels.shape[:2]
    if max_short_side is None or min(h, w) <= max_short_side:
        return pixels
    new_h, new_w = resized_shape(h, w, max_short_side)
    out = cv2.resize(np.ascontiguousarray(pixels), (new_w, new_h), interpolation=cv2.INTER_AREA)
    if pixels.ndim == 3 and out.ndim == 2:  # cv2 drops a trailing channel axis of size 1
        out = out[..., None]
    return np.ascontiguousarray(out)


def resized_shape(height: int, width: int, max_short_side: int | None) -> tuple[int, int]:
    """(height, width) that ``resize_shortest_side`` produces for an image of this size."""
    _validate_max_short_side(max_short_side)
    if max_short_side is None or min(height, width) <= max_short_side:
        return height, width
    if height <= width:
        return max_short_side, max(1, round(width * max_short_side / height))
    return max(1, round(height * max_short_side / width)), max_short_side
