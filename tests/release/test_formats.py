"""The format registry and the takedown rewrite: a shard without some images is byte-identical to a fresh
write of the rest, in every format."""
import dataclasses

import pytest

from veilset.release import coco, ids, parquet, registry, sa1b, shards
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
    want = [ids.annotation_id(im.image_id, k) for k in range(len(im.masks))]
    assert [m["id"] for m in sa1b.sa1b_json(im)["annotations"]] == want
    assert [a["id"] for a in coco.coco_dict([im], ShardKey(0, 1))["annotations"]] == want
    assert [m["id"] for m in parquet.read_rows(parquet.parquet_bytes([im]), ["masks"])[0]["masks"]] == want
    assert all(0 <= i < 2**53 for i in want)


def test_a_clash_of_integer_ids_is_refused_not_published(tmp_path, monkeypatch):
    a, b = (dataclasses.replace(published(i), image_id="sa_" + "00000000000a" + ch * 20)
            for i, ch in ((1, "a"), (2, "b")))
    with pytest.raises(ValueError, match=f"image ids {a.image_id} and {b.image_id} share COCO image id 10"):
        shards.write_shard(str(tmp_path), 0, 1, ALL, [b, a])
    c, d = published(3), published(4)
    monkeypatch.setattr(ids, "annotation_id", lambda image_id, k: 123 + k)  # force the 53-bit hash to collide
    first, second = sorted((c, d), key=lambda im: im.image_id)
    with pytest.raises(ValueError, match=f"image ids {first.image_id} and {second.image_id} share annotation id 123"):
        shards.write_shard(str(tmp_path), 0, 1, ALL, [c, d])
    assert not list(tmp_path.rglob("*.*"))  # nothing written


def test_sa1b_json_has_the_integer_image_id_and_older_releases_still_read(tmp_path, images):
    im = images[0]
    meta = sa1b.sa1b_json(im)["image"]
    assert meta["image_id"] == ids.int_id(im.image_id) and meta["veilset_id"] == im.image_id
    assert sa1b.string_id(meta) == im.image_id
    assert sa1b.string_id({"image_id": im.image_id}) == im.image_id  # written before veilset_id existed
