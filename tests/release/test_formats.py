"""The format registry and the takedown rewrite: a shard without some images is byte-identical to a fresh
write of the rest, in every format."""
import pytest

from veilset.release import ids, registry, shards
from veilset.release.format import ShardFormat, ShardKey
from tests.factories import published

ALL = ("parquet", "coco", "sa1b")


@pytest.fixture()
def images():
    return [published(i) for i in range(6)]


@pytest.mark.parametrize("formats", [("parquet",), ("coco",), ("sa1b",), ALL])
def test_without_equals_a_fresh_write_of_the_rest(tmp_path, images, formats):
    shards.write_shard(str(tmp_path), 0, 1, formats, images, generation=1)
    gone = frozenset(im.image_id for im in images[:2])
    changes = shards.without(ShardKey(0, 1, 1), ShardKey(0, 1, 2), formats, shards.fetcher(str(tmp_path)), gone)
    assert changes == shards.payloads(ShardKey(0, 1, 2), formats, images[2:])
    assert all(".r000002" in rel for rel in changes)  # every file of the shard under the takedown's generation
    old = shards.files_of(ShardKey(0, 1, 1), formats, [im.image_id for im in images])
    assert not set(old) & set(changes)  # nothing of the old generation is overwritten
    if registry.with_image_files(formats):
        assert f"images/00000.r000001/{images[0].image_id}.jpg" in old


def test_without_everything_leaves_nothing(tmp_path, images):
    written = shards.write_shard(str(tmp_path), 0, 1, ALL, images, generation=1)
    changes = shards.without(ShardKey(0, 1, 1), ShardKey(0, 1, 2), ALL, shards.fetcher(str(tmp_path)),
                             frozenset(im.image_id for im in images))
    assert changes == {}
    per_image = {f"images/00000.r000001/{im.image_id}.jpg" for im in images}
    assert set(shards.files_of(ShardKey(0, 1, 1), ALL, [im.image_id for im in images])) == \
        {f.path for f in written} | per_image


def test_canonical_order_and_implied_formats():
    assert registry.selectable() == ALL
    assert registry.validate_formats(["sa1b", "coco", "coco"]) == ("coco", "sa1b")
    assert [f.name for f in registry.expand(("sa1b", "coco"))] == ["coco", "images", "sa1b"]
    assert registry.with_image_files(("coco",)) and not registry.with_image_files(("parquet", "sa1b"))
    assert registry.with_image_files(("nonsense", "coco"))  # lenient for damaged manifests


def test_reading_prefers_a_self_contained_format():
    assert shards.reading_format(ALL).name == "parquet"
    assert shards.reading_format(("coco", "sa1b")).name == "sa1b"
    assert shards.reading_format(("coco",)).name == "coco"


def test_register_refuses_clashes():
    class Clash(ShardFormat):
        name, directory, suffix = "clash", "parquet", ".x"

    with pytest.raises(ValueError, match="already used"):
        registry.register(Clash())

    class Index(ShardFormat):
        name, directory, suffix = "index", "idx", ".x"

    with pytest.raises(ValueError, match="taken"):
        registry.register(Index())
    assert registry.register(registry.get("coco")) is registry.get("coco")  # the same object again: a no-op


def test_annotation_ids_are_shared_by_every_format(tmp_path, images):
    im = images[0]
    for fmt in ALL:
        shards.write_shard(str(tmp_path / fmt), 0, 1, (fmt,), [im])
        (back,) = shards.read_shard(str(tmp_path / fmt), 0, 1, (fmt,))
        assert back.masks == im.masks
    assert ids.annotation_id(im.image_id, 1) == ids.int_id(im.image_id) * 10_000 + 1
