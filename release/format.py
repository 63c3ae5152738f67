"""The interface every output format implements (one module per format, one line in ``release.registry``).

A format owns some files of each shard and knows three things about them:

* ``write(key, images) -> {path: bytes}``: the bytes of its files for one shard (build; a takedown writes the
  rest of a shard again under its own generation, ``key.generation``);
* ``read(key, fetch) -> [PublishedImage]``: the shard's images back (samples, tests, takedown);
* ``count`` / ``records`` / ``copies``: lenient read-only views for the audit (image count of one file, what it
  says about each image, the published JPEG bytes it holds).

``fetch(rel)`` returns the bytes of a file of the release (relative path), so formats never touch storage and a
takedown can stage from the live release. Writers are pure and deterministic (images sorted by ID, no
timestamps): equal images give equal bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from veilset.release import layout
from veilset.release.records import ImageCopy, ImageRecord, PublishedImage

Fetch = Callable[[str], bytes]


class FormatError(ValueError):
    """A file of a format cannot be parsed; the message says why (the audit reports it as is)."""


@dataclass(frozen=True)
class ShardKey:
    """Which shard: number, the release's shard count and the generation (the release that wrote its files);
    all three name its files (``layout``)."""

    shard: int
    num_shards: int
    generation: int = 0


class ShardFormat:
    """Base class: one file per shard under ``directory`` with ``suffix``, listed in the manifest's ``shards``."""

    name = ""
    directory = ""
    suffix = ""
    selectable = True  # may be named in --formats and in the manifest's formats
    listed = True  # its files are listed (with sha256 and image count) in the manifest's ``shards``
    self_contained = True  # its file alone gives back complete PublishedImage records
    implies: tuple[str, ...] = ()  # formats written along with this one (coco -> images)
    holds_jpegs = False  # its files carry published JPEG bytes (``copies`` yields them)

    # -------------------------------------------------------------------------------------------- layout
    def path(self, key: ShardKey) -> str:
        return layout.shard_file(self.directory, self.suffix, key.shard, key.num_shards, key.generation)

    def paths(self, key: ShardKey, image_ids: Sequence[str]) -> list[str]:
        """The files this format owns for a shard holding ``image_ids``."""
        return [self.path(key)]

    def shard_dir(self, key: ShardKey) -> str | None:
        """A folder holding only this shard's files of this format (one file per image), else None."""
        return None

    def owns(self, rel: str) -> bool:
        return rel.startswith(self.directory + "/")

    # -------------------------------------------------------------------------------------------- build, takedown
    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        raise NotImplementedError

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        raise NotImplementedError


    # -------------------------------------------------------------------------------------------- audit views
    def count(self, data: bytes) -> int:
        """Images in one of this format's files; raises on a file that cannot be parsed."""
        raise NotImplementedError

    def records(self, rel: str, data: bytes) -> Iterator[ImageRecord]:
        """What the file ``rel`` says about each image; raises when the file cannot be parsed."""
        return iter(())

    def copies(self, rel: str, data: bytes, image_ids: frozenset[str] | None = None) -> Iterator[ImageCopy]:
        """The published JPEGs inside ``rel`` (only those of ``image_ids`` when given)."""
        return iter(())
