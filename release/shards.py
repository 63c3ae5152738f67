"""All files of one shard, through the format registry: write (build), read back, rewrite without some images
(takedown), delete.

One shard = the images whose ``ids.shard_of(image_id, num_shards)`` is that shard. Files are written atomically
and deterministically (images sorted by ID, no timestamps), so a rerun gives byte-identical files and a takedown
touches exactly the shards that hold its images. No Beam here: the build calls these from a thin DoFn.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from veilset.release import ids, index, layout, registry, storage
from veilset.release.format import Fetch, ShardFormat, ShardKey
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
    out = {index.path(key): index.encode(images, key.shard, registry.with_image_files(formats))}
    for fmt in registry.expand(formats):
        out.update(fmt.write(key, images))
    return out


def write_shard(release_dir: str, shard: int, num_shards: int, formats: Sequence[str],
                images: Sequence[PublishedImage]) -> list[ShardFile]:
    """Write all files of one shard atomically; returns the listed ones (index first). No images: nothing."""
    formats = registry.validate_formats(formats)
    if not images:
        return []
    key = ShardKey(shard, num_shards)
    data = payloads(key, formats, images)
    listed = _listed_files(key, formats, data, len(images))
    for f in listed:
        storage.atomic_write(storage.join(release_dir, f.path), data[f.path])
    for fmt in registry.expand(formats):
        if not fmt.listed:
            _sync_files(release_dir, key, fmt, {rel: b for rel, b in data.items() if fmt.owns(rel)}, prune=False)
    return listed


def _listed_files(key: ShardKey, formats: Sequence[str], data: dict[str, bytes], images: int) -> list[ShardFile]:
    entries = [(index.NAME, index.path(key))]
    entries += [(f.name, f.path(key)) for f in registry.expand(formats) if f.listed]
    return [ShardFile(name, key.shard, rel, ids.sha256_hex(data[rel]), images) for name, rel in entries]


def _sync_files(release_dir: str, key: ShardKey, fmt: ShardFormat, files: dict[str, bytes], *,
                prune: bool = True) -> None:
    """Write a per-image format's ``files`` (files that already hold these bytes are not rewritten). ``prune``:
    also delete the other per-image files of this shard (image-ID names only: a file somebody else put there
    stays). A build does not prune: it removes what the release it replaces listed, after its commit."""
    for rel, data in files.items():
        path = storage.join(release_dir, rel)
        if not (storage.exists(path) and storage.read(path) == data):
            storage.atomic_write(path, data)
    folder = fmt.shard_dir(key)
    if folder is None or not prune:
        return
    wanted = {rel.rsplit("/", 1)[-1] for rel in files}
    full = storage.join(release_dir, folder)
    for name in storage.list_files(full):
        if name not in wanted and ids.is_valid_image_id(layout.image_id_of_name(name)):
            storage.remove(storage.join(full, name))
    storage.remove_empty_dir(full)


def delete_shard(release_dir: str, shard: int, num_shards: int) -> None:
    """Remove every file of a shard (every format, per-image JPEGs): used when a takedown empties a shard."""
    key = ShardKey(shard, num_shards)
    storage.remove(storage.join(release_dir, index.path(key)))
    for fmt in registry.all_formats():
        if fmt.listed:
            storage.remove(storage.join(release_dir, fmt.path(key)))
        else:
            _sync_files(release_dir, key, fmt, {})


def read_shard(release_dir: str, shard: int, num_shards: int, formats: Sequence[str]) -> list[PublishedImage]:
    """Every image of one shard, read back from the first self-contained format the release has (else the first
    format that can read itself with the index's help, i.e. coco)."""
    chosen = reading_format(formats)
    return chosen.read(ShardKey(shard, num_shards), fetcher(release_dir))


def reading_format(formats: Sequence[str]) -> ShardFormat:
    written = [f for f in registry.expand(formats) if f.selectable]
    if not written:
        raise ValueError(f"no readable format among {list(formats)!r}")
    return next((f for f in written if f.self_contained), written[0])


def without(key: ShardKey, formats: Sequence[str], fetch: Fetch, gone: frozenset[str]) -> dict[str, bytes | None]:
    """Every file of a shard with the images ``gone`` removed: new bytes, or None for a file that must go (all
    of them when the shard empties). Reads through ``fetch``, writes nothing."""
    out = index.without(key, fetch, gone)
    emptied = out[index.path(key)] is None
    for fmt in registry.expand(formats):
        if emptied and fmt.listed:
            out[fmt.path(key)] = None
        else:
            out.update(fmt.without(key, fetch, gone))
    return out
