"""Per-image published JPEGs (``images/SSSSS/sa_<id>.jpg``), written along with ``coco`` (its ``file_name``s).

Not a shard file: one file per image, not listed in the manifest (the index's ``file_name`` lists them), and not
named in ``--formats`` (a format that needs them says ``implies = ("images",)``).
"""
from __future__ import annotations

from typing import Iterator, Sequence

from veilset.release import layout
from veilset.release.format import Fetch, ShardFormat, ShardKey
from veilset.release.records import ImageCopy, PublishedImage


class ImagesFormat(ShardFormat):
    name = "images"
    holds_jpegs = True
    directory = layout.IMAGES_DIR
    suffix = layout.JPEG_SUFFIX
    selectable = False
    listed = False
    self_contained = False

    def paths(self, key: ShardKey, image_ids: Sequence[str]) -> list[str]:
        return [layout.image_path(i, key.shard, key.generation) for i in sorted(image_ids)]

    def shard_dir(self, key: ShardKey) -> str | None:
        return layout.image_dir(key.shard, key.generation)

    def owns(self, rel: str) -> bool:
        return rel.startswith(self.directory + "/") and rel.endswith(self.suffix)

    def write(self, key: ShardKey, images: Sequence[PublishedImage]) -> dict[str, bytes]:
        return {layout.image_path(im.image_id, key.shard, key.generation): im.jpeg for im in images}

    def read(self, key: ShardKey, fetch: Fetch) -> list[PublishedImage]:
        raise NotImplementedError("images/ holds JPEGs only: read the shard from a self-contained format or coco")


    def count(self, data: bytes) -> int:
        return 1

    def copies(self, rel: str, data: bytes, image_ids: frozenset[str] | None = None) -> Iterator[ImageCopy]:
        image_id = layout.image_id_of_name(rel)
        if image_ids is None or image_id in image_ids:
            yield ImageCopy(image_id, rel, data)


FORMAT = ImagesFormat()
