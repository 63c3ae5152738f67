"""Sample photos that ship inside installed packages, for ``make demo``; and a before/after picture.

    python -m veilset.pipeline.samples write DIR                      # copy the sample photos into DIR
    python -m veilset.pipeline.samples before-after DIR RELEASE OUT.jpg  # side-by-side: source vs published

The samples are real photos from scikit-image's and matplotlib's package data (public-domain NASA and US Navy
photos among them), plus a crop of the portrait stored sideways with an EXIF orientation, a smaller re-encoded copy
of one photo (a near-copy), one byte-identical duplicate and one truncated file, so the demo shows orientation
handling, both kinds of de-duplication and rejects as well.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

from veilset.detectors.package_photos import PACKAGE_PHOTOS, package_file
from veilset.release import ids, manifest, shards


# The photos and their lookup live with the detector calibration that uses them too (dependencies point one way).
SAMPLES = PACKAGE_PHOTOS
_package_file = package_file


def write_samples(folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, location in SAMPLES.items():
        dst = os.path.join(folder, name)
        shutil.copyfile(_package_file(*location), dst)
        written.append(dst)
    # The portrait's head and shoulders stored sideways with EXIF orientation 6 (as phones do): must be found
    # upright. A crop, so another picture: the whole portrait turned would be a near-copy of grace_hopper.jpg.
    hopper = Image.open(_package_file(*SAMPLES["grace_hopper.jpg"])).convert("RGB")
    head = hopper.crop((0, 0, hopper.width, hopper.height * 2 // 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = os.path.join(folder, "portrait_exif_rotated.jpg")
    head.transpose(Image.Transpose.ROTATE_90).save(rotated, "JPEG", quality=92, exif=exif.tobytes())
    written.append(rotated)
    near = os.path.join(folder, "astronaut_small.jpg")  # published once: grouped with astronaut.png
    astronaut = Image.open(os.path.join(folder, "astronaut.png")).convert("RGB")
    astronaut.resize((astronaut.width * 3 // 4, astronaut.height * 3 // 4), Image.Resampling.LANCZOS).save(
        near, "JPEG", quality=70)
    written.append(near)
    dup = os.path.join(folder, "copy_of_astronaut.png")
    shutil.copyfile(os.path.join(folder, "astronaut.png"), dup)
    written.append(dup)
    broken = os.path.join(folder, "truncated.jpg")
    with open(os.path.join(folder, "grace_hopper.jpg"), "rb") as fh:
        data = fh.read()
    with open(broken, "wb") as fh:
        fh.write(data[: len(data) // 3])
    written.append(broken)
    return written


def _published_jpeg(release: str, image_id: str) -> bytes:
    m = manifest.read(release)
    shard = ids.shard_of(image_id, m.num_shards)
    for im in shards.read_shard(release, shard, m.num_shards, m.formats):
        if im.image_id == image_id:
            return im.jpeg
    raise KeyError(f"{image_id} is not in release {release!r}")


def before_after(sources: list[str], release: str, out_path: str, height: int = 360) -> None:
    """One row per source: the source (EXIF-upright) next to what the release published."""
    from veilset.pipeline.decode import decode_image

    rows = []
    for src in sources:
        with open(src, "rb") as fh:
            data = fh.read()
        image_id = ids.image_id_for(ids.sha256_hex(data))
        before = decode_image(data)
        after = np.asarray(Image.open(io.BytesIO(_published_jpeg(release, image_id))).convert("RGB"))
        pair = []
        for arr in (before, after):
            im = Image.fromarray(arr)
            pair.append(np.asarray(im.resize((max(1, round(im.width * height / im.height)), height))))
        gap = np.full((height, 12, 3), 255, np.uint8)
        rows.append(np.concatenate([pair[0], gap, pair[1]], axis=1))
    width = max(r.shape[1] for r in rows)
    canvas = [np.pad(r, ((0, 12), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    Image.fromarray(np.concatenate(canvas, axis=0)).save(out_path, "JPEG", quality=85)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m veilset.pipeline.samples")
    sub = parser.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("folder")
    b = sub.add_parser("before-after")
    b.add_argument("folder")
    b.add_argument("release")
    b.add_argument("out")
    args = parser.parse_args(argv)
    if args.cmd == "write":
        for path in write_samples(args.folder):
            print(path)
        return 0
    sources = [os.path.join(args.folder, n) for n in ("astronaut.png", "grace_hopper.jpg", "portrait_exif_rotated.jpg")]
    before_after(sources, args.release, args.out)
    print(json.dumps({"before_after": args.out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
