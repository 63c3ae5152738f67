"""Fingerprints of published images, to find every copy of an image: pure functions, numpy + PIL + pdqhash.

A published image has two fingerprints:

- ``pdq``: Meta's PDQ perceptual hash (256 bits, the reference C++ through ``pdqhash``) of the decoded pixels,
  packed into 32 bytes in the bit order of Meta's hex form (``pdq_hex`` equals what ThreatExchange tools print).
  Copies re-encoded (JPEG 30-95, PNG, WebP), resized (0.25-2x), brightened, given new metadata, framed or
  screenshotted (with ``query_hashes``' trimmed hash), turned or mirrored (its dihedral hashes) stay within
  ``MATCH_DISTANCE`` bits of it; distinct photos stay above ``REVIEW_DISTANCE``. Crops are PDQ's limit: ~15 bits
  per 1 % cropped, so 2 % crops fall in the grey band and 5 % or more are not found
  (``benchmarks/near_duplicates.py`` measures all of it; README "Near-duplicates").
- ``window_hashes``: the PDQ hashes of 1,301 crop windows of an image (each side cut by 0, 2, 4, 6, 8 or 10 %,
  and centred crops of 1, 3, 5, 7, 9 %),
  for the images a takedown removes: a copy cropped by up to 10 % per side is within ~1 % per side of one
  window, and so within ``MATCH_DISTANCE`` of its hash. Kept where removed images are remembered (the ledger)
  and used as a requested image's query, so a lightly cropped copy is found both ways.
- ``pixels_sha256``: sha256 of the decoded RGB pixels and their shape: the same picture whatever container or
  metadata wraps it (a published JPEG re-saved losslessly, stripped of or given EXIF), exact and free of false
  matches. It depends on the JPEG decoder (libjpeg-turbo's IDCT), so compare pixel hashes computed by the same
  decoder; PDQ is the decoder- and encoder-independent one.

``NearDuplicateIndex`` holds (image ID, PDQ hash) rows and answers ``query(hash, max_distance)`` with the IDs
within that Hamming distance, by a vectorised exact scan (3.4 ms per query over 1,000,000 hashes on one core;
the numbers and the comparison with faiss are in README). It is persisted to a compact checksummed file
(``save``/``load``: 32 bytes per hash plus the IDs), so a build, a takedown and an operator command share it.

Distances: ``d <= MATCH_DISTANCE``: the same image (act automatically); ``MATCH_DISTANCE < d <=
REVIEW_DISTANCE``: the grey band (a person looks); above: a different image. Hashes with PDQ quality below
``MIN_QUALITY`` (flat, nearly featureless pictures) match unrelated flat pictures: treat their matches as grey.
"""
from __future__ import annotations

import hashlib
import io
import struct
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Sequence, Union

import numpy as np
from PIL import Image

from veilset.release import storage

HASH_BITS = 256
HASH_BYTES = HASH_BITS // 8
_WORDS = HASH_BYTES // 8  # uint64 words per hash

# Chosen by benchmarks/near_duplicates.py on 218 real photos x 28 kinds of copies, 1.37 million pairs of
# distinct images (README "Near-duplicates"): the closest distinct pair is 58 bits apart (similar photos of the
# backs of cars), so <= 31 matches with a 27-bit margin; 32-47 (no distinct pair there) is the grey band where
# a person looks (2 % crops, quarter-size copies end up there).
MATCH_DISTANCE = 31
REVIEW_DISTANCE = 47
MIN_QUALITY = 50

DEFAULT_MAX_PIXELS = 178_956_970  # PIL's own hard limit (2 * Image.MAX_IMAGE_PIXELS)

HashLike = Union[bytes, bytearray, memoryview, str, np.ndarray, "Fingerprint"]


# -- hashes of one image -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fingerprint:
    """The fingerprints of one image's decoded pixels."""

    pdq: bytes  # 32 bytes, Meta's bit order
    quality: int  # PDQ quality 0-100; below MIN_QUALITY the hash is unreliable
    pixels_sha256: str  # hex
    height: int
    width: int
    # PDQ of the picture inside its own flat margins (letterbox bars, a flat sky band: ``trim_borders``), None
    # when it has none. Indexed next to ``pdq``: a copy framed or screenshotted is trimmed by the query down to
    # the same inner picture.
    pdq_trimmed: bytes | None = None

    @property
    def pdq_hex(self) -> str:
        return self.pdq.hex()

    def index_hashes(self) -> list[bytes]:
        """What to put in a ``NearDuplicateIndex`` for this image (``NearDuplicateIndex.add_fingerprint``)."""
        return [self.pdq] + ([self.pdq_trimmed] if self.pdq_trimmed and self.pdq_trimmed != self.pdq else [])

    def to_dict(self) -> dict[str, object]:
        return {"pdq": self.pdq.hex(), "pdq_quality": self.quality, "pixels_sha256": self.pixels_sha256,
                "height": self.height, "width": self.width,
                "pdq_trimmed": self.pdq_trimmed.hex() if self.pdq_trimmed else None}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "Fingerprint":
        trimmed = data.get("pdq_trimmed")
        return cls(pdq=hash_bytes(str(data["pdq"])), quality=int(data["pdq_quality"]),  # type: ignore[arg-type]
                   pixels_sha256=str(data["pixels_sha256"]), height=int(data["height"]),  # type: ignore[arg-type]
                   width=int(data["width"]),  # type: ignore[arg-type]
                   pdq_trimmed=hash_bytes(str(trimmed)) if trimmed else None)


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """``pixels`` as a C-contiguous uint8 (H, W, 3) array (a grey (H, W) or (H, W, 1) array is repeated)."""
    arr = np.asarray(pixels)
    if arr.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"pixels must be (H, W, 3) RGB, got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image {arr.shape}")
    return np.ascontiguousarray(arr)


def decode_rgb(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decoded, EXIF-upright RGB pixels of an encoded image (JPEG, PNG, WebP, ...): what a viewer shows.

    A published JPEG has no metadata, so for it this is the plain decode. ValueError for undecodable data or more
    than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise ValueError(f"image of {im.width}x{im.height} pixels is over the limit of {max_pixels}")
            im.load()
            upright = ImageOps.exif_transpose(im)
            if upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info):
                rgba = upright.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))  # transparency as a browser shows it on white
                flat.paste(rgba, mask=rgba.getchannel("A"))
                upright = flat
            return np.asarray(upright.convert("RGB"))
    except ValueError:
        raise
    except Exception as err:  # PIL raises many types on hostile input
        raise ValueError(f"cannot decode image: {type(err).__name__}: {err}") from None


def _pdq_module():
    try:
        import pdqhash
    except ImportError as err:  # pragma: no cover - pdqhash is a core dependency
        raise RuntimeError("PDQ hashing needs pdqhash: pip install pdqhash") from err
    return pdqhash


def _pack_bits(bits: np.ndarray) -> bytes:
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes()


def pdq_hash(pixels: np.ndarray) -> tuple[bytes, int]:
    """(PDQ hash as 32 bytes, quality 0-100) of RGB pixels."""
    bits, quality = _pdq_module().compute(as_rgb(pixels))
    return _pack_bits(bits), int(quality)


def pdq_dihedral(pixels: np.ndarray) -> tuple[list[bytes], int]:
    """The PDQ hashes of the 8 rotations/mirrorings of the pixels (original first) in one pass, and the quality.

    For queries: a copy that was rotated or mirrored without an EXIF tag matches through one of them.
    """
    hashes, quality = _pdq_module().compute_dihedral(as_rgb(pixels))
    return [_pack_bits(h) for h in hashes], int(quality)


WINDOW_STEPS = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10)  # fraction cut off each side: 6^4 = 1,296 windows
# and centred crops (the same fraction off every side, a zoom) between those steps: the combination the grid is
# worst at, 1 % off on all four sides at once (5 % and 9 % off each side: 97.7 and 96.3 % found without them)
WINDOW_CENTRED = (0.01, 0.03, 0.05, 0.07, 0.09)
WINDOW_SIDE = 512  # px: the long side the image is brought to before its windows are cut (PDQ works at 64 x 64)


def shrink_to(rgb: np.ndarray, side: int) -> np.ndarray:
    """``rgb`` with its long side brought down to ``side`` px (box filter), or as it is when already no larger."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))),
                                                  Image.Resampling.BOX))


def window_hashes(pixels: np.ndarray) -> bytes:
    """The PDQ hashes of the image's crop windows (``WINDOW_STEPS`` cut off each of the four sides, in every
    combination, the uncropped window first; then the ``WINDOW_CENTRED`` crops), concatenated 32 bytes each,
    duplicates dropped. ~1-3 s of CPU."""
    rgb = shrink_to(as_rgb(pixels), WINDOW_SIDE)
    h, w = rgb.shape[:2]
    cuts_x = sorted({round(f * w) for f in WINDOW_STEPS})
    cuts_y = sorted({round(f * h) for f in WINDOW_STEPS})
    cuts = [(t, b, l, r) for t in cuts_y for b in cuts_y for l in cuts_x for r in cuts_x]
    cuts += [(round(f * h), round(f * h), round(f * w), round(f * w)) for f in WINDOW_CENTRED]
    seen: dict[bytes, None] = {}
    for top, bottom, left, right in cuts:
        window = rgb[top:h - bottom, left:w - right]
        if window.shape[0] >= 8 and window.shape[1] >= 8:
            seen.setdefault(pdq_hash(window)[0], None)
    return b"".join(seen)


def split_hashes(blob: bytes) -> list[bytes]:
    """``window_hashes``' concatenation back into 32-byte hashes."""
    if len(blob) % HASH_BYTES:
        raise ValueError(f"a hash list is a multiple of {HASH_BYTES} bytes, got {len(blob)}")
    return [bytes(blob[i:i + HASH_BYTES]) for i in range(0, len(blob), HASH_BYTES)]


def pixels_sha256(pixels: np.ndarray) -> str:
    """sha256 of the RGB pixels and their shape (so a 2x6 and a 3x4 image with the same bytes differ)."""
    rgb = as_rgb(pixels)
    h = hashlib.sha256(b"veilset-rgb8:%dx%dx3:" % (rgb.shape[0], rgb.shape[1]))
    h.update(memoryview(rgb).cast("B"))
    return h.hexdigest()


def fingerprint(pixels: np.ndarray) -> Fingerprint:
    """The fingerprints of RGB pixels (what a build computes for each published image)."""
    rgb = as_rgb(pixels)
    pdq, quality = pdq_hash(rgb)
    inner = trim_borders(rgb)
    return Fingerprint(pdq=pdq, quality=quality, pixels_sha256=pixels_sha256(rgb), height=int(rgb.shape[0]),
                       width=int(rgb.shape[1]), pdq_trimmed=pdq_hash(inner)[0] if inner is not None else None)


def fingerprint_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Fingerprint:
    """Fingerprints of an encoded image (a published JPEG, or a copy someone sends in), decoded EXIF-upright."""
    return fingerprint(decode_rgb(data, max_pixels=max_pixels))


def _content_run(flat: np.ndarray, max_gap: int) -> tuple[int, int]:
    """[start, end) of the longest run of non-flat lines, bridging flat gaps of at most ``max_gap`` lines."""
    runs: list[list[int]] = []
    for i in np.flatnonzero(~flat).tolist():
        if runs and i - runs[-1][1] <= max_gap:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    if not runs:
        return 0, 0
    start, end = max(runs, key=lambda r: r[1] - r[0])
    return start, end


def _flat_lines(gray: np.ndarray, tolerance: float) -> np.ndarray:
    """Per row of ``gray``: its pixels are all about one value (standard deviation under ``tolerance``)."""
    return gray.std(axis=1) < tolerance


def trim_borders(pixels: np.ndarray, *, tolerance: float = 4.0, min_keep: float = 0.25) -> np.ndarray | None:
    """The picture inside a border, a letterbox or a screenshot's flat margins: the longest band of rows that
    are not flat, then within it the longest band of columns that are not flat (twice over, for screenshots with
    UI bars). None when nothing is trimmed or what is left is under ``min_keep`` of either side.

    Both sides use it: a query adds the hash of its trimmed pixels (``query_hashes``), and a published image
    whose own edges are flat (letterbox bars) is indexed with its trimmed hash too (``Fingerprint.pdq_trimmed``),
    since trimming a framed copy also removes the bars."""
    rgb = as_rgb(pixels)
    gray = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    h, w = gray.shape
    step = max(1, min(h, w) // 400)  # every line is tested, on every step-th pixel along it (speed)
    top, bottom, left, right = 0, h, 0, w
    for _ in range(2):
        box = gray[top:bottom, left:right]
        r0, r1 = _content_run(_flat_lines(box[:, ::step], tolerance), max(1, box.shape[0] // 200))
        top, bottom = top + r0, top + r1
        if bottom - top < 1:
            return None
        box = gray[top:bottom, left:right]
        c0, c1 = _content_run(_flat_lines(box[::step].T, tolerance), max(1, box.shape[1] // 200))
        left, right = left + c0, left + c1
        if right - left < 1:
            return None
    if (top, bottom, left, right) == (0, h, 0, w):
        return None
    if bottom - top < min_keep * h or right - left < min_keep * w:
        return None
    return np.ascontiguousarray(rgb[top:bottom, left:right])


# Flat-line tolerances (grey-level standard deviation) a query is trimmed with: 4 takes off noisy bars and margins;
# 1 only bars that are flat to the pixel, and so keeps a photo's own near-flat bands (a sky, a wall) that 4 also
# takes off from a letterboxed phone screenshot (benchmark: 5 of 218 such screenshots were found only with it).
TRIM_TOLERANCES = (4.0, 1.0)


def query_hashes(pixels: np.ndarray, *, dihedral: bool = False, trim: bool = True) -> tuple[list[bytes], int]:
    """The hashes to look a *query* image (a copy someone found) up with, and its quality: its PDQ hash; with
    ``trim`` also the hash of the picture inside its borders/screenshot margins (``trim_borders``); with
    ``dihedral`` also its 7 other rotations/mirrorings (a copy stored turned or mirrored without EXIF). Each
    extra hash is another chance of a false match: the thresholds hold for all of them together (README
    "Near-duplicates"). The trimmed hash is taken at each of ``TRIM_TOLERANCES``. Pass the list to
    ``NearDuplicateIndex.query``."""
    rgb = as_rgb(pixels)
    if dihedral:
        hashes, quality = pdq_dihedral(rgb)
    else:
        h, quality = pdq_hash(rgb)
        hashes = [h]
    if trim:
        for tolerance in TRIM_TOLERANCES:
            inner = trim_borders(rgb, tolerance=tolerance)
            if inner is not None:
                t, _ = pdq_hash(inner)
                if t not in hashes:
                    hashes.append(t)
    return hashes, quality


# -- hash values -----------------------------------------------------------------------------------------------

def hash_bytes(value: HashLike) -> bytes:
    """A 256-bit hash as 32 bytes from bytes, 64 hex digits, a Fingerprint, 32 uint8 or 256 0/1 values."""
    if isinstance(value, Fingerprint):
        return value.pdq
    if isinstance(value, str):
        text = value.strip().lower()
        if len(text) != 2 * HASH_BYTES:
            raise ValueError(f"a PDQ hash in hex has {2 * HASH_BYTES} digits, got {len(text)}")
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"not a hex PDQ hash: {value[:80]!r}") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        out = bytes(value)
    elif isinstance(value, np.ndarray):
        flat = value.reshape(-1)
        if flat.size == HASH_BITS and flat.min() >= 0 and flat.max() <= 1:  # 0/1 per bit, as pdqhash returns
            out = _pack_bits(flat)
        elif flat.size == HASH_BYTES and flat.dtype == np.uint8:
            out = flat.tobytes()
        else:
            raise ValueError(f"a hash array has {HASH_BITS} bits or {HASH_BYTES} uint8, got {value.dtype} "
                             f"{value.shape}")
    else:
        raise TypeError(f"not a hash: {type(value).__name__}")
    if len(out) != HASH_BYTES:
        raise ValueError(f"a PDQ hash has {HASH_BYTES} bytes, got {len(out)}")
    return out


def _words(values: Sequence[HashLike] | np.ndarray) -> np.ndarray:
    """(n, 4) uint64 words of n hashes (big-endian words: word order = byte order of the hash)."""
    if isinstance(values, np.ndarray) and values.dtype == np.uint8 and values.ndim == 2 \
            and values.shape[1] == HASH_BYTES:
        raw = np.ascontiguousarray(values)
    else:
        raw = np.frombuffer(b"".join(hash_bytes(v) for v in values), dtype=np.uint8).reshape(-1, HASH_BYTES)
    return raw.view(">u8").astype(np.uint64).reshape(-1, _WORDS)


def hamming(a: HashLike, b: HashLike) -> int:
    """Number of differing bits between two 256-bit hashes."""
    return int.from_bytes(hash_bytes(a), "big").__xor__(int.from_bytes(hash_bytes(b), "big")).bit_count()


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount64(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Bits set in each uint64 of ``x`` into the uint8 array ``out`` (np.bitwise_count on numpy >= 2)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x, out=out)
    b = x.view(np.uint8).reshape(-1, 8)  # numpy 1.26
    return np.add.reduce(_POPCOUNT8[b], axis=1, dtype=np.uint8, out=out)


# -- the index ---------------------------------------------------------------------------------------------------

class Match(NamedTuple):
    image_id: str
    distance: int


_MAGIC = b"VSPDQIX\n"
_HEADER = struct.Struct("<8sIIQQ")  # magic, version, hash bytes, rows, id bytes
_FILE_VERSION = 1


class NearDuplicateIndex:
    """(image ID, PDQ hash) rows and an exact Hamming-radius search over them.

    Hashes are kept column-wise (four contiguous uint64 arrays), so a query is four XOR + popcount passes over
    contiguous memory, done in cache-sized chunks. An ID may have several rows (e.g. a photo and its dihedral
    variants); ``query`` reports each ID once, at its smallest distance.
    """

    _CHUNK = 1 << 15

    def __init__(self, image_ids: Iterable[str] = (), hashes: Sequence[HashLike] | np.ndarray = ()) -> None:
        self._ids: list[str] = []
        self._cols = np.zeros((_WORDS, 0), dtype=np.uint64)
        self._n = 0
        ids = list(image_ids)
        if ids or len(hashes):
            self.add_many(ids, hashes)

    def __len__(self) -> int:
        return self._n

    @property
    def image_ids(self) -> list[str]:
        return list(self._ids)

    def hashes(self) -> np.ndarray:
        """(n, 32) uint8: the hashes in row order (Meta's byte order)."""
        words = np.ascontiguousarray(self._cols[:, :self._n].T).astype(">u8")
        return words.view(np.uint8).reshape(self._n, HASH_BYTES)

    # -- adding and removing ----------------------------------------------------------------------------------
    def add(self, image_id: str, value: HashLike) -> None:
        self.add_many([image_id], [value])

    def add_fingerprint(self, image_id: str, fp: Fingerprint) -> None:
        """The rows of a published image: its PDQ hash and, if it has flat margins, its trimmed hash."""
        hashes = fp.index_hashes()
        self.add_many([image_id] * len(hashes), hashes)

    def add_many(self, image_ids: Sequence[str], hashes: Sequence[HashLike] | np.ndarray) -> None:
        ids = [_check_id(i) for i in image_ids]
        words = _words(hashes)
        if len(ids) != len(words):
            raise ValueError(f"{len(ids)} IDs but {len(words)} hashes")
        need = self._n + len(ids)
        if need > self._cols.shape[1]:
            grown = np.zeros((_WORDS, max(need, 2 * self._cols.shape[1], 1024)), dtype=np.uint64)
            grown[:, :self._n] = self._cols[:, :self._n]
            self._cols = grown
        self._cols[:, self._n:need] = words.T
        self._ids.extend(ids)
        self._n = need

    def remove(self, image_ids: Iterable[str]) -> int:
        """Drop every row of these IDs (e.g. images taken down); returns the number of rows dropped."""
        gone = set(image_ids)
        keep = np.fromiter((i not in gone for i in self._ids), dtype=bool, count=self._n)
        dropped = int(self._n - keep.sum())
        if dropped:
            self._cols = np.ascontiguousarray(self._cols[:, :self._n][:, keep])
            self._ids = [i for i, k in zip(self._ids, keep) if k]
            self._n = len(self._ids)
        return dropped

    # -- search --------------------------------------------------------------------------------------------
    def distances(self, value: HashLike) -> np.ndarray:
        """Hamming distance (uint16) from ``value`` to every row, in row order."""
        q = _words([value])[0]
        n = self._n
        out = np.empty(n, dtype=np.uint16)
        x = np.empty(min(self._CHUNK, max(n, 1)), dtype=np.uint64)
        c = np.empty_like(x, dtype=np.uint8)
        for s in range(0, n, self._CHUNK):
            e = min(n, s + self._CHUNK)
            m = e - s
            o = out[s:e]
            np.bitwise_xor(self._cols[0, s:e], q[0], out=x[:m])
            o[:] = _popcount64(x[:m], c[:m])
            for k in range(1, _WORDS):
                np.bitwise_xor(self._cols[k, s:e], q[k], out=x[:m])
                o += _popcount64(x[:m], c[:m])
        return out

    def query(self, value: HashLike | Sequence[HashLike], max_distance: int = MATCH_DISTANCE) -> list[Match]:
        """IDs within ``max_distance`` bits of the hash (or, given a list, of any of the hashes: a query's
        dihedral variants), nearest first (ties in row order), each ID once at its smallest distance."""
        if not 0 <= int(max_distance) <= HASH_BITS:
            raise ValueError(f"max_distance must be 0..{HASH_BITS}, got {max_distance}")
        values = value if isinstance(value, (list, tuple)) else [value]
        best: dict[int, int] = {}
        for v in values:
            d = self.distances(v)
            for row in np.flatnonzero(d <= max_distance).tolist():
                dist = int(d[row])
                if dist < best.get(row, HASH_BITS + 1):
                    best[row] = dist
        by_id: dict[str, tuple[int, int]] = {}
        for row, dist in best.items():
            key = self._ids[row]
            if key not in by_id or (dist, row) < by_id[key]:
                by_id[key] = (dist, row)
        ranked = sorted(by_id.items(), key=lambda kv: kv[1])
        return [Match(image_id, dist) for image_id, (dist, _) in ranked]

    def nearest(self, value: HashLike) -> Match | None:
        """The nearest row (any distance), or None for an empty index."""
        if not self._n:
            return None
        d = self.distances(value)
        row = int(np.argmin(d))
        return Match(self._ids[row], int(d[row]))

    # -- persistence ---------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """Compact form: header, 32 bytes per hash, the IDs joined by newlines, sha256 of all that."""
        ids = "\n".join(self._ids).encode("utf-8")
        body = _HEADER.pack(_MAGIC, _FILE_VERSION, HASH_BYTES, self._n, len(ids)) + self.hashes().tobytes() + ids
        return body + hashlib.sha256(body).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> "NearDuplicateIndex":
        if len(data) < _HEADER.size + 32:
            raise ValueError("not a near-duplicate index: too short")
        magic, version, hash_bytes_, rows, id_bytes = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ValueError("not a near-duplicate index (bad magic)")
        if version != _FILE_VERSION or hash_bytes_ != HASH_BYTES:
            raise ValueError(f"near-duplicate index version {version} with {hash_bytes_}-byte hashes is not "
                             f"understood (expected version {_FILE_VERSION}, {HASH_BYTES} bytes)")
        end = _HEADER.size + rows * HASH_BYTES + id_bytes
        if len(data) != end + 32:
            raise ValueError(f"near-duplicate index is {len(data)} bytes, its header says {end + 32}")
        if hashlib.sha256(data[:end]).digest() != data[end:]:
            raise ValueError("near-duplicate index checksum mismatch (corrupt or truncated)")
        raw = np.frombuffer(data, dtype=np.uint8, count=rows * HASH_BYTES, offset=_HEADER.size)
        ids = data[_HEADER.size + rows * HASH_BYTES:end].decode("utf-8").split("\n") if rows else []
        if len(ids) != rows:
            raise ValueError(f"near-duplicate index has {rows} hashes but {len(ids)} IDs")
        return cls(ids, raw.reshape(rows, HASH_BYTES))

    def save(self, path: str) -> None:
        """Write atomically (``release.storage.atomic_write``: temporary name, fsync, rename)."""
        storage.atomic_write(path, self.to_bytes())

    @classmethod
    def load(cls, path: str) -> "NearDuplicateIndex":
        with open(path, "rb") as fh:
            return cls.from_bytes(fh.read())


def read_listed_index(release_dir: str, listed: tuple[str, str] | None) -> NearDuplicateIndex:
    """The index file a manifest lists as (path, sha256) (e.g. ``removed_windows``), empty when it lists none; a
    file whose sha256 is not the listed one is an error, never an empty index."""
    if not listed:
        return NearDuplicateIndex()
    rel, sha256 = listed
    data = storage.read(storage.join(release_dir, rel))
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{rel}: its sha256 is not the manifest's; the release is damaged (veilset audit tells more)")
    return NearDuplicateIndex.from_bytes(data)


def _check_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not image_id or "\n" in image_id or "\r" in image_id:
        raise ValueError(f"an image ID is a non-empty one-line string, got {image_id!r}")
    return image_id
