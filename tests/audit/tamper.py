"""Tamper with a release the way a careful adversary (or a buggy writer) would: new pixels for one published
image, re-encoded and re-written in every format with its sha256 updated, the shard files' hashes updated in the
manifest, so that integrity still passes and only the privacy checks can notice. Plus drawing helpers: a
readable licence plate rendered with a font that ships in matplotlib."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from veilset.pipeline.encode import encode_jpeg
from veilset.release import fingerprint, ids, shards, storage
from veilset.release.canonical import dumps_json
from veilset.release.layout import MANIFEST_NAME


def republish(root: str, image_id: str, pixels: np.ndarray) -> None:
    """Replace ``image_id``'s published pixels in every format, keeping every hash consistent."""
    republish_jpeg(root, image_id, lambda _: encode_jpeg(np.ascontiguousarray(pixels)))


def republish_jpeg(root: str, image_id: str, change: Callable[[bytes], bytes]) -> None:
    """Replace ``image_id``'s published JPEG bytes with ``change(old bytes)`` in every format (Parquet, images/,
    SA-1B tar member), updating the image's sha256 and the shard files' hashes in the manifest."""
    with open(os.path.join(root, MANIFEST_NAME)) as fh:
        manifest = json.load(fh)
    num_shards = int(manifest["num_shards"])
    shard = ids.shard_of(image_id, num_shards)
    images = shards.read_shard(root, shard, num_shards, manifest["formats"])
    assert any(im.image_id == image_id for im in images), f"{image_id} is not in shard {shard}"
    images = [_with_jpeg(im, change(im.jpeg)) if im.image_id == image_id else im for im in images]
    written = {f.path: f for f in shards.write_shard(root, shard, num_shards, manifest["formats"], images,
                                                     shards.listed_generation(root, shard))}
    for entry in manifest["shards"] + manifest["index"]:
        if entry["path"] in written:
            entry["sha256"] = written[entry["path"]].sha256
    storage.atomic_write(os.path.join(root, MANIFEST_NAME), dumps_json(manifest))


def _with_jpeg(image, jpeg: bytes):
    """The image with new JPEG bytes and every hash of them a careful adversary would update too: the sha256,
    and (when the release has them) the fingerprints of the decoded pixels."""
    out = dataclasses.replace(image, jpeg=jpeg, sha256=ids.sha256_hex(jpeg))
    if not image.pdq:
        return out
    try:
        fp = fingerprint.fingerprint_bytes(jpeg)
    except (ValueError, OSError):
        return out  # bytes that no longer decode: integrity names them anyway
    return dataclasses.replace(out, pdq=fp.pdq_hex, pixels_sha256=fp.pixels_sha256)


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", "DejaVuSans-Bold.ttf")
    return ImageFont.truetype(path, size)


def draw_plate(text: str = "KX 4827", height: int = 44) -> np.ndarray:
    """A clean licence plate (black letters on white, dark border), ``height`` px tall, about 4.5 : 1."""
    font = _font(int(height * 0.62))
    left, top, right, bottom = font.getbbox(text)
    width = max(int(height * 4.5), right - left + height)
    im = Image.new("RGB", (width, height), (245, 245, 240))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, width - 1, height - 1], outline=(20, 20, 20), width=max(2, height // 16))
    draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top), text, font=font,
              fill=(15, 15, 15))
    return np.asarray(im)


def paste(pixels: np.ndarray, patch: np.ndarray, x: int, y: int) -> np.ndarray:
    out = np.array(pixels, copy=True)
    h, w = patch.shape[:2]
    assert 0 <= x and 0 <= y and x + w <= out.shape[1] and y + h <= out.shape[0], \
        f"a {w}x{h} patch at ({x}, {y}) does not fit a {out.shape[1]}x{out.shape[0]} image"
    out[y:y + h, x:x + w] = patch
    return out


def car_with_plate(text: str = "KX 4827", size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A synthetic street photo: asphalt, a dark car body with tail lights, a readable plate on it."""
    w, h = size
    rng = np.random.default_rng(7)
    im = Image.new("RGB", (w, h), (96, 98, 104))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, w, h // 3], fill=(150, 180, 210))  # sky
    draw.rounded_rectangle([w // 6, h // 4, 5 * w // 6, 4 * h // 5], radius=40, fill=(40, 52, 70))  # car rear
    draw.rectangle([w // 6 + 20, h // 4 + 30, 5 * w // 6 - 20, h // 2], fill=(70, 90, 110))  # rear window
    for x in (w // 6 + 20, 5 * w // 6 - 80):  # tail lights
        draw.rectangle([x, h // 2 + 20, x + 60, h // 2 + 50], fill=(200, 30, 30))
    px = np.asarray(im).astype(np.float32) + rng.normal(0, 3, (h, w, 3))
    plate = draw_plate(text)
    ph, pw = plate.shape[:2]
    return paste(np.clip(px, 0, 255).astype(np.uint8), plate, (w - pw) // 2, int(h * 0.62))


def rewrite_listed(root: str, rel: str, data: bytes) -> None:
    """Replace one listed file's bytes and its sha256 in the manifest (so only a check that reads it can tell)."""
    storage.atomic_write(os.path.join(root, rel), data)
    with open(os.path.join(root, MANIFEST_NAME)) as fh:
        manifest = json.load(fh)
    entries = [e for e in manifest["shards"] + manifest["index"] if e["path"] == rel]
    assert entries, f"{rel} is not listed"
    for entry in entries:
        entry["sha256"] = ids.sha256_hex(data)
    storage.atomic_write(os.path.join(root, MANIFEST_NAME), dumps_json(manifest))


def reinsert(root: str, backup: str, image_id: str) -> None:
    """Put a removed image back from an older release ``backup``: its index row and its copy in every format are
    written into the current shard (its generation), the manifest's hashes, per-file image counts and counts
    (published and input + 1, so they still add up and ``removed`` still matches the log) updated."""
    with open(os.path.join(root, MANIFEST_NAME)) as fh:
        manifest = json.load(fh)
    num_shards = int(manifest["num_shards"])
    shard = ids.shard_of(image_id, num_shards)
    [old] = [im for im in shards.read_shard(backup, shard, num_shards, manifest["formats"])
             if im.image_id == image_id]
    images = shards.read_shard(root, shard, num_shards, manifest["formats"])
    assert all(im.image_id != image_id for im in images), f"{image_id} is still published"
    images = sorted([*images, old], key=lambda im: im.image_id)
    written = {f.path: f for f in shards.write_shard(root, shard, num_shards, manifest["formats"], images,
                                                     shards.listed_generation(root, shard))}
    for entry in manifest["shards"] + manifest["index"]:
        if entry["path"] in written:
            entry["sha256"], entry["images"] = written[entry["path"]].sha256, written[entry["path"]].images
    manifest["counts"]["published"] += 1
    manifest["counts"]["input"] += 1
    storage.atomic_write(os.path.join(root, MANIFEST_NAME), dumps_json(manifest))


# ------------------------------------------------------------------ JPEG bytes the strict rule refuses (audit: metadata)
def with_segment(data: bytes, marker: int, payload: bytes) -> bytes:
    """``data`` with one marker segment inserted right after SOI."""
    return data[:2] + bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:]


def before_eoi(data: bytes, extra: bytes) -> bytes:
    assert data.endswith(b"\xff\xd9")
    return data[:-2] + extra + data[-2:]


EXIF = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x01\x88\x25\x00\x04"
XMP = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
# case -> (change of the published bytes, what the metadata finding says)
METADATA_TAMPERS = {
    "exif": (lambda d: with_segment(d, 0xE1, EXIF), "EXIF"),
    "xmp": (lambda d: with_segment(d, 0xE1, XMP), "XMP"),
    "com": (lambda d: with_segment(d, 0xFE, b"taken at 12 Main Street"), "comment"),
    "dnl": (lambda d: before_eoi(d, b"\xff\xdc\x00\x04\x01\xe0"), "DNL"),
    "padding": (lambda d: d[:2] + b"\xff" * 6 + d[2:], "6 byte(s) (fill or padding) before"),
    "trailing": (lambda d: d + b"GPS 52.52N 13.40E", "17 byte(s) after EOI"),
}
