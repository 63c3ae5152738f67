"""Tiny releases for takedown tests, written with the pipeline's own shard writers (no Beam, no models)."""
from __future__ import annotations

import hashlib
import os
from typing import Sequence

from pipeline import ids, shards
from pipeline.manifest import FORMAT_VERSION, MANIFEST_NAME, REJECTS_NAME, atomic_write_bytes, dumps_json
from pipeline.records import PublishedImage
from tests.factories import published


def make_release(root: str, n: int = 24, num_shards: int = 4, formats: Sequence[str] = ("parquet", "coco", "sa1b"),
                 seed0: int = 0) -> tuple[dict, list[PublishedImage]]:
    os.makedirs(root, exist_ok=True)
    images = [published(seed0 + k, n_masks=1) for k in range(n)]
    files = []
    for shard in range(num_shards):
        files += shards.write_shard(root, shard, num_shards, formats,
                                    [im for im in images if ids.shard_of(im.image_id, num_shards) == shard])
    entry = lambda f: {"format": f.format, "shard": f.shard, "path": f.path, "sha256": f.sha256, "images": f.images}
    files.sort(key=lambda f: (f.format, f.shard))
    atomic_write_bytes(os.path.join(root, REJECTS_NAME), b"")
    manifest = {
        "format_version": FORMAT_VERSION, "release": 1, "created": "2026-11-25T12:00:00Z", "num_shards": num_shards,
        "formats": list(shards.validate_formats(formats)),
        "counts": {"input": n, "published": n, "rejected": 0, "duplicates": 0, "blocked": 0},
        "rejects_by_reason": {}, "shards": [entry(f) for f in files if f.format != shards.INDEX],
        "index": [entry(f) for f in files if f.format == shards.INDEX], "rejects": REJECTS_NAME, "config": {},
        "models": {}, "log": [],
    }
    atomic_write_bytes(os.path.join(root, MANIFEST_NAME), dumps_json(manifest))
    return manifest, images


def tree(root: str) -> dict[str, str]:
    """Relative path -> sha256 of every file (hidden ones included) under ``root``."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = hashlib.sha256(fh.read()).hexdigest()
    return out


def all_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = fh.read()
    return out
