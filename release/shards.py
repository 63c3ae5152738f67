"""All files of one shard, through the format registry: write (build), read back, rewrite without some images
(takedown: a fresh write of the rest under the takedown's generation), list.

One shard = the images whose ``ids.shard_of(image_id, num_shards)`` is that shard. Files are written atomically
and deterministically (images sorted by ID, no timestamps), so a rerun gives byte-identical files and a takedown
touches exactly the shards that hold its images. No Beam here: the build calls these from a thin DoFn.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Sequence

from veilset.release import ids, index, manifest as release_manifest, registry, storage
from veilset.release.format import Fetch, ShardKey
from veilset.release.records import PublishedImage, ShardFile


def fetcher(release_dir: str) -> Fetch:
    """``fetch(rel)``: bytes of a file of the release in ``release_dir``."""
    return lambda rel: storage.read(storage.join(release_dir, rel))


def sort_images(images: Iterable[PublishedImage]) -> list[PublishedImage]:
    """By image ID; an image twice in one shard is a bug (ValueError), and so are two images whose integer ids
    clash (``ids.clashes``: the build rejects the later one before it gets here)."""
    out = sorted(images, key=lambda im: im.image_id)
    for a, b in zip(out, out[1:]):
        if a.image_id == b.image_id:
            raise ValueError(f"image {a.image_id} twice in one shard")
    clashing = ids.clashes((im.image_id, len(im.masks)) for im in out)
    if clashing:
        loser, (other, what) = min(clashing.items())
        raise ValueError(f"image ids {other} and {loser} share {what}: COCO needs it unique within a shard, "
                         f"so {loser} must stay out (the build rejects it as write:id_clash)")
    return out


def payloads(key: ShardKey, formats: Sequence[str], images: Sequence[PublishedImage]) -> dict[str, bytes]:
    """The bytes of every file of one shard (relative path -> content, index first), without writing anything."""
    images = sort_images(images)
    out = {index.path(key): index.encode(images, key, registry.with_image_files(formats))}
    for fmt in registry.expand(formats):
        out.update(fmt.write(key, images))
    return out


def write_shard(release_dir: str, shard: int, num_shards: int, formats: Sequence[str],
                images: Sequence[PublishedImage], generation: int = 0) -> list[ShardFile]:
    """Write all files of one shard (of ``generation``) atomically; returns the listed ones (index first). No
    images: nothing. Files of another generation are never touched: the release being replaced stays whole."""
    formats = registry.validate_formats(formats)
    if not images:
        return []
    key = ShardKey(shard, num_shards, generation)
    data = payloads(key, formats, images)
    for rel, content in data.items():
        path = storage.join(release_dir, rel)
        if not (storage.exists(path) and storage.read(path) == content):  # a resumed build rewrites nothing
            storage.atomic_write(path, content)
    return listed_files(key, formats, data, len(images))


def listed_files(key: ShardKey, formats: Sequence[str], data: dict[str, bytes], images: int) -> list[ShardFile]:
    """The manifest entries (index first) of a shard whose files are ``data``."""
    entries = [(index.NAME, index.path(key))]
    entries += [(f.name, f.path(key)) for f in registry.expand(formats) if f.listed]
    return [ShardFile(name, key.shard, rel, ids.sha256_hex(data[rel]), images) for name, rel in entries]


def files_of(key: ShardKey, formats: Sequence[str], image_ids: Sequence[str]) -> list[str]:
    """Every file of a shard holding ``image_ids`` (index, each format's files, per-image JPEGs)."""
    out = [index.path(key)]
    for fmt in registry.expand(formats):
        out += fmt.paths(key, image_ids)
    return out


def read_shard(release_dir: str, shard: int, num_shards: int, formats: Sequence[str],
               generation: int | None = None) -> list[PublishedImage]:
    """Every image of one shard, read back from the first self-contained format the release has (else the first
    format that can read itself with the index's help, i.e. coco). ``generation`` None: the one the release's
    manifest lists for that shard."""
    if generation is None:
        generation = listed_generation(release_dir, shard)
    return read_images(ShardKey(shard, num_shards, generation), formats, fetcher(release_dir))


def read_images(key: ShardKey, formats: Sequence[str], fetch: Fetch) -> list[PublishedImage]:
    """Every image of shard ``key`` (``reading_format``), with what the index holds when the format does not carry
    it (COCO, SA-1B: the fingerprints, ``near_duplicate_of``): a rewrite keeps them whatever the formats."""
    images = reading_format(formats).read(key, fetch)
    rows = {row["image_id"]: row for row in index.parse(fetch(index.path(key)))}
    return [_with_index_fields(im, rows.get(im.image_id, {})) for im in images]


def _with_index_fields(im: PublishedImage, row: dict) -> PublishedImage:
    return dataclasses.replace(im, pdq=im.pdq or row.get("pdq") or "",
                               pixels_sha256=im.pixels_sha256 or row.get("pixels_sha256") or "",
                               near_duplicate_of=im.near_duplicate_of or row.get("near_duplicate_of") or "")


def listed_generation(release_dir: str, shard: int) -> int:
    """The generation of ``shard`` in the manifest of the release in ``release_dir`` (0 when not listed)."""
    if not storage.exists(release_manifest.path(release_dir)):
        return 0
    return release_manifest.read(release_dir).key(shard).generation  # the one derivation: Manifest.key


def reading_format(formats: Sequence[str]) -> ShardFormat:
    written = [f for f in registry.expand(formats) if f.selectable]
    if not written:
        raise ValueError(f"no readable format among {list(formats)!r}")
    return next((f for f in written if f.self_contained), written[0])


def without(key: ShardKey, new_key: ShardKey, formats: Sequence[str], fetch: Fetch,
            gone: frozenset[str]) -> dict[str, bytes]:
    """The files of shard ``key`` minus the images ``gone``, written as shard ``new_key`` (the takedown's
    generation): the same bytes as a fresh write of the rest. Empty when nothing is left. Writes nothing."""
    keep = [im for im in read_images(key, formats, fetch) if im.image_id not in gone]
    return payloads(new_key, formats, keep) if keep else {}
