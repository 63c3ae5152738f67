"""Near-copies among a build's inputs: does the build's grouping (``veilset.pipeline.near_duplicates``) put each
copy with its photo, and never two distinct photos together?

    python benchmarks/input_grouping.py [PHOTOS ...] [--limit N] [--workers N] [--json OUT.json]

Photos: as ``benchmarks/near_duplicates.py`` (../shared/eval's real photos and the package photos, or the files
given). Each photo and its copies (``GROUPING_TRANSFORMS``, a subset of that benchmark's ``TRANSFORMS``: the
issue's list) get the ``NearKey`` a build computes for a staged image; then ``near_duplicates.group`` runs once
over every original and every copy together, as a build with all of them as inputs would. Reported:

- per transform, how many copies were grouped with their own photo (``grouped``), left alone (published as an
  image of their own) or grouped with another photo (``wrong``: a false match);
- originals grouped with another original (false matches among distinct photos), and the number of distinct
  pairs those figures cover;
- the cost: ms per key (what ``EncodeAndStage`` adds per image) and the seconds of the one ``group`` call.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import machine  # noqa: E402
from benchmarks.near_duplicates import TRANSFORMS, _pil, load_photos  # noqa: E402
from veilset.pipeline import near_duplicates as nd  # noqa: E402
from veilset.release import fingerprint as fp  # noqa: E402

GROUPING_TRANSFORMS = ("jpeg_q30", "jpeg_q75", "resize_0.25", "resize_0.5", "resize_2", "png", "webp_q40",
                       "crop_2_corner", "crop_5_one_side", "crop_10_corner", "exif_rotated", "metadata",
                       "brightness_+10", "brightness_-10", "border_5_white", "border_10_black", "screenshot_phone",
                       "rotated_90_no_exif", "mirrored")


def _key(image_id: str, name: str, rgb: np.ndarray) -> nd.NearKey:
    return nd.near_key(image_id, name, rgb, fp.fingerprint(rgb))


def _keys_of_photo(job: tuple[int, str, np.ndarray, tuple[str, ...]]) -> tuple[list[nd.NearKey], float]:
    k, name, rgb, transforms = job
    t0 = time.perf_counter()
    keys = [_key(f"sa_{k:08d}{0:024x}", f"{k:05d}/original", rgb)]
    per_key = time.perf_counter() - t0
    im = _pil(rgb)
    for j, t in enumerate(transforms, 1):
        keys.append(_key(f"sa_{k:08d}{j:024x}", f"{k:05d}/{t}", fp.decode_rgb(TRANSFORMS[t](im))))
    return keys, per_key


def compute(photos: list[tuple[str, np.ndarray]], transforms: tuple[str, ...], workers: int) -> tuple[list, list]:
    jobs = [(k, name, rgb, transforms) for k, (name, rgb) in enumerate(photos)]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = list(pool.imap(_keys_of_photo, jobs))
    else:
        results = [_keys_of_photo(j) for j in jobs]
    return [k for keys, _ in results for k in keys], [t for _, t in results]


def tally(keys: list[nd.NearKey], found: dict[str, nd.NearDuplicate], transforms: tuple[str, ...]) -> dict:
    photo_of = {k.image_id: k.source.split("/")[0] for k in keys}
    kind_of = {k.image_id: k.source.split("/")[1] for k in keys}
    # a copy is with its photo when it and the original end up in one group (either may be the one kept)
    kept_as = {i: (found[i].of if i in found else i) for i in photo_of}
    rows = {t: {"grouped": 0, "alone": 0, "wrong": 0, "low_quality": 0} for t in transforms}
    low = {k.image_id for k in keys if k.quality < fp.MIN_QUALITY}
    originals = {photo_of[i]: i for i in photo_of if kind_of[i] == "original"}
    for i, kind in kind_of.items():
        if kind == "original":
            continue
        row = rows[kind]
        own = originals[photo_of[i]]
        if i in low or own in low:
            row["low_quality"] += 1
        elif photo_of[kept_as[i]] != photo_of[i]:
            row["wrong"] += 1
        elif kept_as[i] == kept_as[own]:
            row["grouped"] += 1
        else:
            row["alone"] += 1
    wrong_originals = sum(1 for i, d in found.items() if kind_of[i] == "original" and photo_of[d.of] != photo_of[i])
    return {"per_transform": rows, "originals_grouped_with_another_photo": wrong_originals}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("photos", nargs="*", help="files or folders (default: ../shared/eval + package photos)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--transforms", default=",".join(GROUPING_TRANSFORMS), help="comma-separated subset")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    transforms = tuple(t for t in args.transforms.split(",") if t)
    photos = load_photos(args.photos)[:args.limit]
    t0 = time.perf_counter()
    keys, per_key = compute(photos, transforms, args.workers)
    keys_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = nd.group(keys)
    group_s = time.perf_counter() - t0
    result = tally(keys, found, transforms)
    per_photo = 1 + len(transforms)
    result.update({"machine": machine(), "photos": len(photos), "keys": len(keys),
                   "distinct_pairs": len(keys) * (len(keys) - 1) // 2 - len(photos) * per_photo * (per_photo - 1) // 2,
                   "ms_per_key_original": round(1000 * float(np.median(per_key)), 1),
                   "keys_seconds": round(keys_s, 1), "group_seconds": round(group_s, 2),
                   "match_distance": fp.MATCH_DISTANCE})
    print(f"{len(photos)} photos, {len(keys)} keys ({result['distinct_pairs']:,} pairs of distinct images); "
          f"key {result['ms_per_key_original']} ms per original (median), group() {group_s:.2f} s")
    print(f"{'transform':22} {'grouped':>8} {'alone':>6} {'wrong':>6} {'flat':>5}")
    for t, row in result["per_transform"].items():
        print(f"{t:22} {row['grouped']:8} {row['alone']:6} {row['wrong']:6} {row['low_quality']:5}")
    print(f"originals grouped with another photo: {result['originals_grouped_with_another_photo']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
