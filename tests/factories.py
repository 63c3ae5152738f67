"""Small in-memory records for tests (no Beam, no models)."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from veilset.detectors.base import Detection
from veilset.release import fingerprint, ids
from veilset.release.records import PublishedImage
from veilset.segmentation.base import MaskAnnotation


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def published(seed: int, width: int = 40, height: int = 30, n_masks: int = 2) -> PublishedImage:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    jpeg = buf.getvalue()
    content = ids.sha256_hex(f"source-{seed}".encode())
    masks = []
    for k in range(n_masks):
        m = np.zeros((height, width), bool)
        m[2 + k : 10 + k, 3 + 2 * k : 12 + 2 * k] = True
        ys, xs = np.nonzero(m)
        masks.append(MaskAnnotation(
            segmentation=rle(m), bbox_xywh=(float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)),
            area=int(m.sum()), predicted_iou=0.9, stability_score=0.96, point_coords=((float(xs[0]), float(ys[0])),),
            crop_box_xywh=(0.0, 0.0, float(width), float(height))))
    fp = fingerprint.fingerprint_bytes(jpeg)
    return PublishedImage(
        image_id=ids.image_id_for(content), content_sha256=content, width=width, height=height, jpeg=jpeg,
        pdq=fp.pdq_hex, pixels_sha256=fp.pixels_sha256,
        sha256=ids.sha256_hex(jpeg),
        detections=(Detection("face", (1.0, 2.0, 9.0, 12.0), 0.87, "centerface"),),
        anonymization={"method": "pixelate", "margin": 0.2, "regions": []}, masks=tuple(masks))


def published_photo(rgb: np.ndarray, name: str, quality: int = 90) -> PublishedImage:
    """A published image of real pixels (a package photo or a copy of one), with its fingerprints; ``name``
    makes its source (and so its image ID) distinct."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, "JPEG", quality=quality)
    jpeg = buf.getvalue()
    content = ids.sha256_hex(f"photo-{name}".encode())
    fp = fingerprint.fingerprint_bytes(jpeg)
    return PublishedImage(
        image_id=ids.image_id_for(content), content_sha256=content, width=int(rgb.shape[1]),
        height=int(rgb.shape[0]), jpeg=jpeg, sha256=ids.sha256_hex(jpeg), detections=(),
        anonymization={"method": "pixelate", "margin": 0.2, "regions": []}, masks=(), pdq=fp.pdq_hex,
        pixels_sha256=fp.pixels_sha256)


def photo_copies(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Copies of a real photo, by what was done to it; PDQ distances to the photo (grace_hopper.jpg): about 2
    (re-encoded), 12 (half size), 18 (1 % cropped), 34 (2 % cropped on every side: the grey band), and to the
    nearest of its crop windows (``fingerprint.window_hashes``, what a takedown queries with): 2 % cropped about
    10, 12 % cut off the top about 38 (beyond the windows' 10 %: the grey band)."""
    h, w = rgb.shape[:2]
    return {"reencoded": rgb, "half": np.asarray(Image.fromarray(rgb).resize((w // 2, h // 2))),
            "crop1": rgb[h // 100:, w // 100:], "crop2": rgb[h // 50: h - h // 50, w // 50: w - w // 50],
            "crop12": rgb[h * 12 // 100:]}
