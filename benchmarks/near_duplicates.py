"""Near-duplicate thresholds: how far copies of a published image drift, how close distinct photos come.

    python benchmarks/near_duplicates.py [PHOTOS ...] [--json OUT.json] [--cache C.npz] [--scan-rows 1000000]

Photos: the real photos of ../shared/eval (faces + plates, 212) and the photos that ship in scikit-image and
matplotlib (``veilset.detectors.package_photos``), or the files/folders given. For each photo it makes the copies
people make (``TRANSFORMS``: JPEG quality 30-95, resize 0.25-2x, PNG, WebP, crops up to 10 %, EXIF rotation and
metadata, brightness +-10 %, borders, screenshots, sideways and mirrored copies) and hashes every original and
every copy with PDQ (``veilset.release.fingerprint``) and, to compare, imagehash's pHash and dHash (64 bits) and
pHash at 256 bits. A copy is looked up as veilset looks copies up: against the index of every original.

- match distances: copy -> its own original (per transform);
- non-match distances: copy -> every *other* original, and original -> every other original (all pairs of
  distinct images: with 218 photos x 26 copies about 1.3 million pairs). The plates set is full of distinct but
  similar photos (the backs of cars, same framing), which is what sets the false-match floor;
- for each hash: the largest threshold with 0 false matches over all those pairs, and the recall per transform
  at PDQ's chosen threshold, with and without the query-side variants (dihedral hashes, trimmed borders);
- ms per query of ``NearDuplicateIndex`` over ``--scan-rows`` hashes (and faiss' IndexBinaryFlat if installed).

Prints tables and histograms; ``--json`` writes everything. ``--cache`` keeps the hashes of a run (the slow part:
15-50 min with --workers 2 on 2 shared cores) so thresholds can be re-read without recomputing.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import collect_images, default_photo_dirs, machine  # noqa: E402
from veilset.release import fingerprint as fp  # noqa: E402


# -- copies ------------------------------------------------------------------------------------------------------

def _pil(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb)


def _jpeg(im: Image.Image, quality: int = 90, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _webp(im: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=quality, method=2)
    return buf.getvalue()


def _resize(im: Image.Image, factor: float) -> Image.Image:
    size = (max(1, round(im.width * factor)), max(1, round(im.height * factor)))
    return im.resize(size, Image.Resampling.LANCZOS if factor < 1 else Image.Resampling.BICUBIC)


def _crop(im: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = im.size
    return im.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _random_cut(im: Image.Image) -> tuple[float, float, float, float]:
    """0-10 % off each side, drawn from a generator seeded by the picture (the same copy on every run)."""
    seed = int.from_bytes(fp.pdq_hash(np.asarray(im))[0][:8], "big")
    return tuple(float(x) for x in np.random.default_rng(seed).uniform(0.0, 0.10, 4))


def _border(im: Image.Image, frac: float, colour: tuple[int, int, int]) -> Image.Image:
    b = max(1, round(min(im.size) * frac))
    out = Image.new("RGB", (im.width + 2 * b, im.height + 2 * b), colour)
    out.paste(im, (b, b))
    return out


def _exif_rotated(im: Image.Image) -> bytes:
    """Stored sideways with EXIF orientation 6 (as phones do) and camera metadata: a viewer shows it upright."""
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    exif[0x010F] = "Phone Maker"
    exif[0x0110] = "Model X"
    exif[0x0132] = "2026:01:02 03:04:05"
    exif[0x010E] = "a copy someone shared"
    return _jpeg(im.transpose(Image.Transpose.ROTATE_90), 90, exif=exif.tobytes())


def _metadata(im: Image.Image) -> bytes:
    """Same pixels, different metadata: EXIF (camera, GPS-like tags, software), a comment, progressive JPEG."""
    exif = Image.Exif()
    exif[0x010F] = "Other Maker"
    exif[0x0131] = "Editor 2.0"
    exif[0x8298] = "(c) somebody"
    return _jpeg(im, 90, exif=exif.tobytes(), comment=b"re-shared", progressive=True, optimize=True)


def _ui_text(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], colour: tuple[int, int, int],
             rng: np.random.Generator) -> None:
    """Small rectangles standing for icons and text in a UI bar."""
    x0, y0, x1, y1 = box
    x = x0 + 8
    while x < x1 - 20:
        w = int(rng.integers(6, 40))
        draw.rectangle((x, y0 + (y1 - y0) // 3, min(x + w, x1 - 4), y1 - (y1 - y0) // 3), fill=colour)
        x += w + int(rng.integers(6, 30))


def _phone_screenshot(im: Image.Image) -> bytes:
    """A phone screenshot of the photo in a gallery app: 1080 px wide screen, status bar, app bar, black
    letterbox, bottom navigation; then shared at half size as JPEG 80."""
    rng = np.random.default_rng(im.width * 7919 + im.height)
    shown = im.resize((1080, max(1, round(im.height * 1080 / im.width))), Image.Resampling.LANCZOS)
    screen_h = max(2340, shown.height + 500)
    canvas = Image.new("RGB", (1080, screen_h), (0, 0, 0))
    canvas.paste(shown, (0, (screen_h - shown.height) // 2))
    d = ImageDraw.Draw(canvas)
    _ui_text(d, (0, 0, 1080, 70), (230, 230, 230), rng)  # status bar: clock, battery
    d.rectangle((0, 70, 1080, 220), fill=(20, 20, 20))  # app bar
    _ui_text(d, (0, 70, 1080, 220), (200, 200, 200), rng)
    d.rectangle((0, screen_h - 160, 1080, screen_h), fill=(20, 20, 20))  # bottom navigation
    _ui_text(d, (0, screen_h - 160, 1080, screen_h), (200, 200, 200), rng)
    return _jpeg(_resize(canvas, 0.5), 80)


def _desktop_screenshot(im: Image.Image) -> bytes:
    """A browser screenshot: the photo at 60 % on a white page under the browser's tab and address bars, the
    whole screen then rescaled to 80 % and saved as PNG."""
    rng = np.random.default_rng(im.width * 104729 + im.height)
    shown = _resize(im, 0.6)
    margin_x, chrome_h, margin_y = max(40, shown.width // 6), 110, 60
    canvas = Image.new("RGB", (shown.width + 2 * margin_x, shown.height + chrome_h + 2 * margin_y),
                       (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, canvas.width, chrome_h), fill=(222, 225, 230))  # tabs + address bar
    _ui_text(d, (0, 0, canvas.width, 45), (120, 120, 130), rng)
    d.rectangle((90, 58, canvas.width - 90, 98), fill=(255, 255, 255))
    _ui_text(d, (100, 60, canvas.width // 2, 96), (60, 60, 60), rng)
    canvas.paste(shown, (margin_x, chrome_h + margin_y))
    return _png(_resize(canvas, 0.8))


TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg_q30": lambda im: _jpeg(im, 30),
    "jpeg_q50": lambda im: _jpeg(im, 50),
    "jpeg_q75": lambda im: _jpeg(im, 75),
    "jpeg_q95": lambda im: _jpeg(im, 95),
    "resize_0.25": lambda im: _jpeg(_resize(im, 0.25)),
    "resize_0.5": lambda im: _jpeg(_resize(im, 0.5)),
    "resize_1.5": lambda im: _jpeg(_resize(im, 1.5)),
    "resize_2": lambda im: _jpeg(_resize(im, 2.0)),
    "png": _png,
    "webp_q75": lambda im: _webp(im, 75),
    "webp_q40": lambda im: _webp(im, 40),
    "crop_2_one_side": lambda im: _jpeg(_crop(im, 0.02, 0, 0, 0)),
    "crop_2_corner": lambda im: _jpeg(_crop(im, 0, 0.02, 0.02, 0)),
    "crop_5_one_side": lambda im: _jpeg(_crop(im, 0.05, 0, 0, 0)),
    "crop_10_one_side": lambda im: _jpeg(_crop(im, 0.10, 0, 0, 0)),
    "crop_5_corner": lambda im: _jpeg(_crop(im, 0, 0.05, 0.05, 0)),
    "crop_10_corner": lambda im: _jpeg(_crop(im, 0, 0.10, 0.10, 0)),
    "crop_5_each_side": lambda im: _jpeg(_crop(im, 0.05, 0.05, 0.05, 0.05)),
    # off the crop windows' 2 % grid (fingerprint.WINDOW_STEPS): the worst cases for a window lookup
    "crop_3_one_side": lambda im: _jpeg(_crop(im, 0, 0, 0.03, 0)),
    "crop_7_corner": lambda im: _jpeg(_crop(im, 0.07, 0, 0, 0.07)),
    "crop_9_each_side": lambda im: _jpeg(_crop(im, 0.09, 0.09, 0.09, 0.09)),
    "crop_random_10": lambda im: _jpeg(_crop(im, *_random_cut(im))),
    "exif_rotated": _exif_rotated,
    "metadata": _metadata,
    "brightness_+10": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.10)),
    "brightness_-10": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(0.90)),
    "border_5_white": lambda im: _jpeg(_border(im, 0.05, (255, 255, 255))),
    "border_10_black": lambda im: _jpeg(_border(im, 0.10, (0, 0, 0))),
    "screenshot_phone": _phone_screenshot,
    "screenshot_desktop": _desktop_screenshot,
    "rotated_90_no_exif": lambda im: _jpeg(im.transpose(Image.Transpose.ROTATE_90)),
    "mirrored": lambda im: _jpeg(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
}
# Copies that only a dihedral query can find (pixels really turned, no EXIF to undo it).
DIHEDRAL_ONLY = ("rotated_90_no_exif", "mirrored")
# Crops beyond ~2 %: no global hash of the whole picture finds them; the removed image's crop windows do
# (variant "windows": README "Near-duplicates").
HEAVY_CROPS = ("crop_5_one_side", "crop_10_one_side", "crop_5_corner", "crop_10_corner", "crop_5_each_side",
               "crop_3_one_side", "crop_7_corner", "crop_9_each_side", "crop_random_10")


# -- hashes ------------------------------------------------------------------------------------------------------

def _imagehashes(rgb: np.ndarray) -> dict[str, bytes]:
    import imagehash

    im = _pil(rgb)
    out = {}
    for name, fn in (("phash64", lambda: imagehash.phash(im, hash_size=8)),
                     ("dhash64", lambda: imagehash.dhash(im, hash_size=8)),
                     ("phash256", lambda: imagehash.phash(im, hash_size=16))):
        out[name] = np.packbits(fn().hash.reshape(-1).astype(np.uint8)).tobytes()
    return out


def hash_all(rgb: np.ndarray, *, with_imagehash: bool) -> dict[str, object]:
    """Every hash of one image: pdq, its quality, its 8 dihedral hashes, its trimmed-border hash, imagehash."""
    pdq, quality = fp.pdq_hash(rgb)
    dihedral, _ = fp.pdq_dihedral(rgb)
    trimmed = fp.trim_borders(rgb)
    strict = fp.trim_borders(rgb, tolerance=fp.TRIM_TOLERANCES[-1])
    out: dict[str, object] = {"pdq": pdq, "quality": quality, "dihedral": dihedral,
                              "trimmed": fp.pdq_hash(trimmed)[0] if trimmed is not None else pdq,
                              "trimmed_strict": fp.pdq_hash(strict)[0] if strict is not None else pdq}
    if with_imagehash:
        out.update(_imagehashes(rgb))
    return out


def load_photos(paths: list[str]) -> list[tuple[str, np.ndarray]]:
    files: list[Path] = collect_images(paths) if paths else []
    out = []
    if not paths:
        files = collect_images(default_photo_dirs()) if default_photo_dirs() else []
        from veilset.detectors.package_photos import PACKAGE_PHOTOS, photo_path

        for name in PACKAGE_PHOTOS:
            try:
                files.append(Path(photo_path(name)))
            except FileNotFoundError:
                pass
    seen: dict[str, str] = {}
    for f in files:
        rgb = fp.decode_rgb(f.read_bytes())
        key = fp.pixels_sha256(rgb)
        if key in seen:  # the same picture twice is not two distinct images
            print(f"skipping {f}: same pixels as {seen[key]}", file=sys.stderr)
            continue
        seen[key] = str(f)
        out.append((str(f), rgb))
    return out


def _hash_photo(job: tuple[str, np.ndarray, list[str], bool]) -> tuple[dict, dict[str, dict], float]:
    name, rgb, transforms, with_imagehash = job
    t0 = time.perf_counter()
    fp.pdq_hash(rgb)
    pdq_s = time.perf_counter() - t0
    im = _pil(rgb)
    copies = {t: hash_all(fp.decode_rgb(TRANSFORMS[t](im)), with_imagehash=with_imagehash) for t in transforms}
    original = hash_all(rgb, with_imagehash=with_imagehash)
    t0 = time.perf_counter()
    original["windows"] = fp.window_hashes(rgb)  # as the ledger keeps a removed image's
    original["windows_s"] = time.perf_counter() - t0
    return original, copies, pdq_s


def compute(photos: list[tuple[str, np.ndarray]], transforms: list[str], with_imagehash: bool,
            workers: int = 1) -> dict:
    originals: list[dict] = []
    copies: dict[str, list[dict]] = {t: [] for t in transforms}
    t_pdq: list[float] = []
    start = time.perf_counter()
    jobs = [(name, rgb, transforms, with_imagehash) for name, rgb in photos]
    if workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers)
        results = pool.imap(_hash_photo, jobs)
    else:
        pool, results = None, map(_hash_photo, jobs)
    try:
        for k, ((name, rgb), (orig, copy_hashes, pdq_s)) in enumerate(zip(photos, results)):
            originals.append(orig)
            for t in transforms:
                copies[t].append(copy_hashes[t])
            t_pdq.append(pdq_s)
            print(f"[{k + 1}/{len(photos)}] {os.path.basename(name)} {rgb.shape[1]}x{rgb.shape[0]} "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    return {"names": [n for n, _ in photos], "originals": originals, "copies": copies,
            "pdq_ms_per_image": 1000 * float(np.median(t_pdq)),
            "sizes": [list(rgb.shape[:2]) for _, rgb in photos]}


def save_cache(path: str, data: dict) -> None:
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(data, fh)


def load_cache(path: str) -> dict:
    import pickle

    with open(path, "rb") as fh:
        return pickle.load(fh)


# -- distances ---------------------------------------------------------------------------------------------------

def _matrix(values: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), -1)


def distance_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances, (len(a), len(b)), of packed hashes."""
    out = np.empty((len(a), len(b)), dtype=np.uint16)
    for i in range(len(a)):
        out[i] = np.bitwise_count(np.bitwise_xor(b, a[i])).sum(axis=1, dtype=np.uint16)
    return out


class _Windows:
    """Every original's crop windows as one (rows, 4) uint64 matrix, and which original each row belongs to."""

    def __init__(self, data: dict) -> None:
        blobs = [o["windows"] for o in data["originals"]]
        self.owner = np.concatenate([np.full(len(b) // fp.HASH_BYTES, k) for k, b in enumerate(blobs)])
        self.words = np.frombuffer(b"".join(blobs), dtype=">u8").astype(np.uint64).reshape(-1, 4)
        self.starts = np.flatnonzero(np.r_[True, self.owner[1:] != self.owner[:-1]])
        self.n = len(blobs)

    def min_distances(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), originals): the smallest distance from each query hash to any window of each original."""
        q = np.frombuffer(rows.tobytes(), dtype=">u8").astype(np.uint64).reshape(-1, 4)
        out = np.empty((len(q), self.n), dtype=np.uint16)
        for i in range(len(q)):
            d = np.bitwise_count(np.bitwise_xor(self.words, q[i])).sum(axis=1, dtype=np.uint16)
            out[i] = np.minimum.reduceat(d, self.starts)
        return out


_DISTANCES: dict[tuple[int, str, str], tuple[dict[str, np.ndarray], np.ndarray]] = {}


def query_distances(data: dict, kind: str, variant: str = "plain") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``_query_distances``, computed once per (data, kind, variant)."""
    key = (id(data), kind, variant)
    if key not in _DISTANCES:
        _DISTANCES[key] = _query_distances(data, kind, variant)
    return _DISTANCES[key]


def _query_distances(data: dict, kind: str, variant: str = "plain") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(per transform: distance of each copy to its own original; all distances to other originals).

    ``variant`` (PDQ only): ``plain`` one hash per query; ``dihedral`` min over 8; ``trim`` min over the hash and
    the trimmed-border hash; ``all`` min over the 8 dihedral and the trimmed hash. With ``trim`` and ``all`` the
    index also holds each original's trimmed hash (``Fingerprint.index_hashes``), as veilset indexes them.
    ``windows``: ``all`` queries, and the index also holds each original's crop windows
    (``fingerprint.window_hashes``), as a takedown's lookups and the ledger's blocklist hold a removed image.
    """
    index = _matrix([o[kind] for o in data["originals"]])
    index_trimmed = _matrix([o["trimmed"] for o in data["originals"]]) \
        if kind == "pdq" and variant in ("trim", "all", "windows") else None
    windows = _Windows(data) if kind == "pdq" and variant == "windows" else None  # built once: query_distances
    n = len(index)
    off_diag = ~np.eye(n, dtype=bool)

    def query_sets(entries: list[dict]) -> list[list[bytes]]:
        if kind != "pdq" or variant == "plain":
            return [[e[kind]] for e in entries]
        if variant == "dihedral":
            return [list(e["dihedral"]) for e in entries]
        strict = [[e["trimmed_strict"]] if "trimmed_strict" in e else [] for e in entries]  # query_hashes' 2nd trim
        if variant == "trim":
            return [[e["pdq"], e["trimmed"]] + s for e, s in zip(entries, strict)]
        return [list(e["dihedral"]) + [e["trimmed"]] + s for e, s in zip(entries, strict)]  # all, windows

    def min_dist(entries: list[dict]) -> np.ndarray:
        sets = query_sets(entries)
        width = max(len(s) for s in sets)
        best = np.full((len(entries), n), 65535, dtype=np.uint16)
        for j in range(width):
            rows = _matrix([s[j] if j < len(s) else s[0] for s in sets])
            best = np.minimum(best, distance_matrix(rows, index))
            if index_trimmed is not None:
                best = np.minimum(best, distance_matrix(rows, index_trimmed))
            if windows is not None:
                best = np.minimum(best, windows.min_distances(rows))
        return best

    same: dict[str, np.ndarray] = {}
    others = [min_dist(data["originals"])[off_diag]]
    for t, entries in data["copies"].items():
        d = min_dist(entries)
        same[t] = np.diag(d).copy()
        others.append(d[off_diag])
    return same, np.concatenate(others)


def histogram(values: np.ndarray, bins: list[int]) -> list[tuple[str, int]]:
    counts, edges = np.histogram(values, bins=bins)
    return [(f"{int(edges[i])}-{int(edges[i + 1]) - 1}", int(c)) for i, c in enumerate(counts)]


def ascii_hist(title: str, values: np.ndarray, bins: list[int]) -> str:
    rows = histogram(values, bins)
    top = max(c for _, c in rows) or 1
    lines = [title]
    for label, c in rows:
        lines.append(f"  {label:>8} {c:>9}  " + "#" * (0 if c == 0 else max(1, round(40 * c / top))))
    return "\n".join(lines)


# -- scan speed --------------------------------------------------------------------------------------------------

def scan_speed(rows: int, queries: int = 50) -> dict[str, float]:
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(rows, fp.HASH_BYTES), dtype=np.uint8)
    index = fp.NearDuplicateIndex([f"sa_{k:032x}" for k in range(rows)], raw)
    qs = [raw[k].tobytes() for k in rng.integers(0, rows, queries)]
    index.query(qs[0], fp.MATCH_DISTANCE)  # warm up
    times = []
    for q in qs:
        t0 = time.perf_counter()
        hits = index.query(q, fp.MATCH_DISTANCE)
        times.append(time.perf_counter() - t0)
        assert hits and hits[0].distance == 0
    out = {"rows": rows, "numpy_ms_median": 1000 * float(np.median(times)),
           "numpy_ms_min": 1000 * float(np.min(times)), "index_bytes": len(index.to_bytes())}
    try:
        import faiss
    except ImportError:
        return out
    faiss.omp_set_num_threads(1)
    fi = faiss.IndexBinaryFlat(fp.HASH_BITS)
    fi.add(raw)
    times = []
    for q in qs:
        t0 = time.perf_counter()
        fi.range_search(np.frombuffer(q, dtype=np.uint8)[None, :], fp.MATCH_DISTANCE + 1)
        times.append(time.perf_counter() - t0)
    out.update(faiss_ms_median=1000 * float(np.median(times)), faiss_ms_min=1000 * float(np.min(times)))
    batch = np.stack([np.frombuffer(q, dtype=np.uint8) for q in qs])
    t0 = time.perf_counter()
    fi.range_search(batch, fp.MATCH_DISTANCE + 1)
    out["faiss_batch_ms_per_query"] = 1000 * (time.perf_counter() - t0) / len(qs)
    return out


# -- report ------------------------------------------------------------------------------------------------------

def report(data: dict, *, match: int, review: int, scan: dict | None) -> dict:
    n = len(data["originals"])
    transforms = list(data["copies"])
    result: dict = {"photos": n, "transforms": transforms, "match_distance": match, "review_distance": review,
                    "pdq_ms_per_image": data["pdq_ms_per_image"], "machine": machine()}
    kinds = ["pdq"] + [k for k in ("phash64", "dhash64", "phash256") if k in data["originals"][0]]
    print(f"{n} distinct photos x {len(transforms)} copies each")
    print("\n== hash comparison: the largest threshold with 0 false matches, and recall there "
          "(transforms that need dihedral queries excluded) ==")
    comparison = {}
    plain_transforms = [t for t in transforms if t not in DIHEDRAL_ONLY]
    for kind in kinds:
        same, others = query_distances(data, kind)
        bits = len(data["originals"][0][kind]) * 8
        zero_fp = int(others.min()) - 1
        recalls = {t: float(np.mean(same[t] <= zero_fp)) for t in plain_transforms}
        worst = min(recalls, key=recalls.get)
        comparison[kind] = {"bits": bits, "non_match_pairs": int(others.size), "min_non_match": int(others.min()),
                            "zero_fp_threshold": zero_fp, "mean_recall": float(np.mean(list(recalls.values()))),
                            "worst": worst, "worst_recall": recalls[worst],
                            "transforms_at_99": sum(r >= 0.99 for r in recalls.values())}
        c = comparison[kind]
        print(f"  {kind:<9} {bits:>3} bits  closest distinct pair {c['min_non_match']:>3}  0-FP threshold "
              f"{zero_fp:>3} ({zero_fp / bits:.0%} of bits)  mean recall {c['mean_recall']:.1%}  "
              f">=99 %: {c['transforms_at_99']}/{len(plain_transforms)}  worst {worst} {recalls[worst]:.1%}")
    result["comparison"] = comparison

    print(f"\n== PDQ at match <= {match}, grey band {match + 1}-{review} ==")
    variants = {}
    for variant in ("plain", "dihedral", "trim", "all", "windows"):
        same, others = query_distances(data, "pdq", variant)
        fm = int(np.sum(others <= match))
        grey = int(np.sum((others > match) & (others <= review)))
        variants[variant] = {
            "non_match_pairs": int(others.size), "false_matches": fm, "false_match_rate": fm / others.size,
            "non_matches_in_grey_band": grey, "min_non_match": int(others.min()),
            "zero_fp_threshold": int(others.min()) - 1,
            "recall": {t: float(np.mean(same[t] <= match)) for t in transforms},
            "recall_incl_grey": {t: float(np.mean(same[t] <= review)) for t in transforms},
            "match_p99": {t: float(np.percentile(same[t], 99)) for t in transforms},
            "match_max": {t: int(same[t].max()) for t in transforms},
            "match_hist": histogram(np.concatenate(list(same.values())), list(range(0, 129, 8)) + [257]),
            "non_match_hist": histogram(others, list(range(0, 129, 8)) + [257]),
        }
        v = variants[variant]
        print(f"  queries '{variant}': {v['non_match_pairs']} non-match pairs, false matches {fm} "
              f"(rate {v['false_match_rate']:.2g}), in grey band {grey}, closest distinct pair "
              f"{v['min_non_match']} (0-FP threshold {v['zero_fp_threshold']})")
    result["pdq"] = variants
    print(f"\n  {'transform':<20} " + " ".join(f"{v:>17}" for v in variants) + "   max dist (plain/all)")
    for t in transforms:
        cells = " ".join(f"{variants[v]['recall'][t]:>8.1%} ({variants[v]['recall_incl_grey'][t]:>6.1%})"
                         for v in variants)
        print(f"  {t:<20} {cells}   {variants['plain']['match_max'][t]:>3} / {variants['all']['match_max'][t]:>3}")
    print("  (recall at the match threshold; in brackets: matched or in the grey band)")

    same, others = query_distances(data, "pdq", "windows")
    print("\n" + ascii_hist("PDQ distances of copies to their original ('windows' lookups):",
                            np.concatenate(list(same.values())), list(range(0, 129, 8)) + [257]))
    print(ascii_hist("PDQ distances between distinct images ('windows' lookups):", others,
                     list(range(0, 129, 8)) + [257]))
    index = _matrix([o["pdq"] for o in data["originals"]])
    d = distance_matrix(index, index).astype(np.int32)
    d[np.tril_indices(n)] = 9999
    closest = np.dstack(np.unravel_index(np.argsort(d, axis=None)[:5], d.shape))[0]
    result["closest_distinct_pairs"] = [(os.path.basename(data["names"][i]), os.path.basename(data["names"][j]),
                                         int(d[i, j])) for i, j in closest]
    print("\nclosest distinct originals (PDQ): " + "; ".join(f"{a} ~ {b}: {x}"
                                                          for a, b, x in result["closest_distinct_pairs"]))
    quality = np.array([o["quality"] for o in data["originals"]])
    result["quality_below_min"] = int(np.sum(quality < fp.MIN_QUALITY))
    result["windows_s_per_image"] = float(np.median([o["windows_s"] for o in data["originals"]]))
    result["windows_per_image"] = float(np.median([len(o["windows"]) // fp.HASH_BYTES for o in data["originals"]]))
    print(f"\noriginals with PDQ quality < {fp.MIN_QUALITY}: {result['quality_below_min']}; "
          f"PDQ hashing: {data['pdq_ms_per_image']:.0f} ms per photo (median, full size); crop windows: "
          f"{result['windows_per_image']:.0f} hashes in {result['windows_s_per_image']:.2f} s per photo (median)")
    if scan:
        result["scan"] = scan
        line = (f"NearDuplicateIndex over {scan['rows']:,} hashes ({scan['index_bytes'] / 1e6:.0f} MB file): "
                f"{scan['numpy_ms_median']:.1f} ms per query (median; min {scan['numpy_ms_min']:.1f})")
        if "faiss_ms_median" in scan:
            line += (f"; faiss IndexBinaryFlat: {scan['faiss_ms_median']:.1f} ms (min {scan['faiss_ms_min']:.1f}), "
                     f"batched {scan['faiss_batch_ms_per_query']:.1f} ms per query")
        print(line)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="*", help="files or folders (default: ../shared/eval + package photos)")
    ap.add_argument("--transforms", default=",".join(TRANSFORMS), help="comma-separated subset of the copies")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos (a quick run)")
    ap.add_argument("--no-imagehash", action="store_true", help="PDQ only (no comparison)")
    ap.add_argument("--cache", default=None, help="pickle of the hashes: read if it exists, else written")
    ap.add_argument("--match", type=int, default=fp.MATCH_DISTANCE)
    ap.add_argument("--review", type=int, default=fp.REVIEW_DISTANCE)
    ap.add_argument("--scan-rows", type=int, default=1_000_000, help="0 skips the query-speed measurement")
    ap.add_argument("--workers", type=int, default=1, help="processes hashing photos in parallel")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.cache and os.path.exists(args.cache):
        data = load_cache(args.cache)
    else:
        transforms = [t for t in args.transforms.split(",") if t]
        unknown = sorted(set(transforms) - set(TRANSFORMS))
        if unknown:
            raise SystemExit(f"unknown transforms {unknown}; known: {sorted(TRANSFORMS)}")
        photos = load_photos(args.photos)[: args.limit]
        if len(photos) < 2:
            raise SystemExit("need at least 2 distinct photos")
        with_imagehash = not args.no_imagehash
        if with_imagehash:
            try:
                import imagehash  # noqa: F401 - only for the comparison; not a veilset dependency
            except ImportError:
                print("imagehash is not installed (pip install imagehash): PDQ only", file=sys.stderr)
                with_imagehash = False
        data = compute(photos, transforms, with_imagehash=with_imagehash, workers=args.workers)
        if args.cache:
            save_cache(args.cache, data)
    scan = scan_speed(args.scan_rows) if args.scan_rows else None
    result = report(data, match=args.match, review=args.review, scan=scan)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
