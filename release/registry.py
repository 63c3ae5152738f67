"""The registry of output formats. A new format is one module implementing ``release.format.ShardFormat`` and
one ``register`` line here (or a ``register`` call from a plugin): the build writes through it, takedown
rewrites through it and the audit reads through it.

Registration order is the canonical order (of ``--formats``, of the manifest's ``formats``, of reading).
"""
from __future__ import annotations

from typing import Sequence

from veilset.release import coco, images, index, parquet, sa1b
from veilset.release.format import ShardFormat, ShardKey

_FORMATS: dict[str, ShardFormat] = {}
DEFAULT_FORMATS = ("parquet", "coco")


def register(fmt: ShardFormat) -> ShardFormat:
    """Add a format (idempotent for the same object); its name, folder and suffix must be new."""
    if _FORMATS.get(fmt.name) is fmt:
        return fmt
    if not fmt.name or fmt.name in _FORMATS or fmt.name == index.NAME:
        raise ValueError(f"format name {fmt.name!r} is empty or taken")
    clash = [f.name for f in _FORMATS.values() if f.directory == fmt.directory]
    if clash or fmt.directory == index.DIR:
        raise ValueError(f"format {fmt.name!r}: folder {fmt.directory!r} is already used by {clash or 'index'}")
    _FORMATS[fmt.name] = fmt
    return fmt


def unregister(name: str) -> None:
    """Remove a format (tests that register a toy format clean up with it)."""
    _FORMATS.pop(name, None)


register(parquet.FORMAT)
register(coco.FORMAT)
register(images.FORMAT)
register(sa1b.FORMAT)


def get(name: str) -> ShardFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; expected one of {sorted(_FORMATS)}") from None


def all_formats() -> tuple[ShardFormat, ...]:
    return tuple(_FORMATS.values())


def selectable() -> tuple[str, ...]:
    """Names that ``--formats`` and the manifest's ``formats`` accept, in canonical order."""
    return tuple(f.name for f in _FORMATS.values() if f.selectable)


def validate_formats(formats: Sequence[str]) -> tuple[str, ...]:
    """``formats`` in canonical order without duplicates; ValueError naming the bad ones."""
    names = selectable()
    bad = [f for f in formats if f not in names]
    if bad or not formats:
        raise ValueError(f"--formats: unknown or empty {list(formats)!r}; choose from {', '.join(names)}")
    return tuple(f for f in names if f in formats)


def expand(formats: Sequence[str]) -> tuple[ShardFormat, ...]:
    """The formats written for a release of ``formats``: those plus what they imply, in canonical order."""
    wanted = set(formats)
    for name in formats:
        wanted.update(get(name).implies)
    return tuple(f for f in _FORMATS.values() if f.name in wanted)


def shard_path(fmt: str, shard: int, num_shards: int, generation: int = 0) -> str:
    """Path of the shard file of a listed format (or of the index), e.g.
    ``parquet/shard-00003-of-00016.r000002.parquet``."""
    if fmt == index.NAME:
        return index.path(ShardKey(shard, num_shards, generation))
    found = _FORMATS.get(fmt)
    if found is None or not found.listed:
        raise ValueError(f"unknown shard format {fmt!r}; expected one of {sorted([index.NAME, *selectable()])}")
    return found.path(ShardKey(shard, num_shards, generation))


def format_of(rel: str) -> str | None:
    """The format (or ``index``) that owns the release file ``rel``; None for files no format owns."""
    if rel.startswith(index.DIR + "/"):
        return index.NAME
    return next((f.name for f in _FORMATS.values() if f.owns(rel)), None)


def managed_dirs() -> tuple[str, ...]:
    """Top folders of a release that formats own (what a rebuild may clean)."""
    return (index.DIR, *(f.directory for f in _FORMATS.values()))


def known(formats: Sequence[str]) -> tuple[str, ...]:
    """The names in ``formats`` that are registered and selectable (lenient: readers of damaged manifests)."""
    names = selectable()
    return tuple(f for f in formats if f in names)


def with_image_files(formats: Sequence[str]) -> bool:
    """Whether a release of ``formats`` publishes per-image JPEGs (the index's ``file_name``)."""
    return images.FORMAT in expand(known(formats))
