"""Tiny releases for takedown tests, written with the release format's own shard writers and manifest (no Beam,
no models)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from typing import Sequence

import pyarrow.parquet as pq

from veilset.release import ids, index, manifest, registry, shards, storage
from veilset.release.layout import REJECTS_NAME
from veilset.release.manifest import load_manifest
from veilset.release.records import PublishedImage
from tests.factories import published


def make_release(root: str, n: int = 24, num_shards: int = 4, formats: Sequence[str] = ("parquet", "coco", "sa1b"),
                 seed0: int = 0) -> tuple[dict, list[PublishedImage]]:
    images = [published(seed0 + k, n_masks=1) for k in range(n)]
    return release_of(root, images, num_shards, formats), images


def release_of(root: str, images: Sequence[PublishedImage], num_shards: int = 4,
               formats: Sequence[str] = ("parquet", "coco", "sa1b")) -> dict:
    """A release (manifest as a dict) of exactly these images."""
    os.makedirs(root, exist_ok=True)
    n = len(images)
    files = []
    for shard in range(num_shards):
        files += shards.write_shard(root, shard, num_shards, formats,
                                    [im for im in images if ids.shard_of(im.image_id, num_shards) == shard])
    storage.atomic_write(os.path.join(root, REJECTS_NAME), b"")
    built = manifest.Manifest.for_build(
        created="2026-11-25T12:00:00Z", num_shards=num_shards, formats=registry.validate_formats(formats),
        files=files, counts=manifest.Counts(input=n, published=n, rejected=0, duplicates=0, blocked=0),
        rejects_by_reason={}, config={}, models={})
    manifest.write(root, built)
    return built.to_dict()


def all_bytes(root: str) -> dict[str, bytes]:
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, root).replace(os.sep, "/")] = fh.read()
    return out


def tree(root: str) -> dict[str, str]:
    """Relative path -> sha256 of every file (hidden ones included) under ``root``."""
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in all_bytes(root).items()}


def release_ids(root: str) -> set[str]:
    m = load_manifest(root)
    return {r["image_id"] for e in m["index"] for r in index.read(root, e["path"])}


def assert_gone(root: str, removed, jpegs) -> None:
    """No file mentions a removed ID (the manifest's log excepted) or holds its JPEG; every format re-read."""
    files = all_bytes(root)
    for rel, data in files.items():
        for jpeg in jpegs:
            assert jpeg not in data, f"removed JPEG bytes still in {rel}"
        for i in removed:
            if rel == "manifest.json":
                m = json.loads(data)
                m.pop("log")
                assert i not in json.dumps(m)
            else:
                assert i.encode() not in data, f"{i} still named in {rel}"
    m = load_manifest(root)
    for e in m["shards"]:
        data = files[e["path"]]
        if e["format"] == "parquet":
            table = pq.read_table(io.BytesIO(data))
            assert not set(table.column("image_id").to_pylist()) & set(removed)
            assert not {bytes(r["bytes"]) for r in table.column("image").to_pylist()} & set(jpegs)
        elif e["format"] == "sa1b":
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                assert not {n.split(".")[0] for n in tar.getnames()} & set(removed)
        elif e["format"] == "coco":
            coco = json.loads(data)
            assert not {im["image_id"] for im in coco["images"]} & set(removed)
    assert not release_ids(root) & set(removed)


def expected_files(root: str) -> set[str]:
    m = load_manifest(root)
    out = {"manifest.json", m["rejects"]} | {e["path"] for e in m["shards"] + m["index"]}
    if m.get("removed_windows"):  # the takedowns' crop windows
        out.add(m["removed_windows"]["path"])
    if os.path.exists(os.path.join(root, ".veilset-release.json")):  # a built release carries its marker
        out.add(".veilset-release.json")
    for e in m["index"]:
        out |= {r["file_name"] for r in index.read(root, e["path"]) if r["file_name"]}
    return out
