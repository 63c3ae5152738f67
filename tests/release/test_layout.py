import pytest

from veilset.release import layout, registry

ID = "sa_" + "a" * 32


def test_paths():
    assert registry.shard_path("parquet", 3, 16) == "parquet/shard-00003-of-00016.parquet"
    assert registry.shard_path("coco", 3, 16) == "coco/shard-00003-of-00016.json"
    assert registry.shard_path("sa1b", 3, 16) == "sa1b/shard-00003-of-00016.tar"
    assert registry.shard_path("index", 0, 1) == "index/shard-00000-of-00001.jsonl"
    assert layout.image_path(ID, 7) == f"images/00007/{ID}.jpg"
    with pytest.raises(ValueError, match="unknown shard format"):
        registry.shard_path("csv", 0, 1)
    with pytest.raises(ValueError, match="unknown shard format"):
        registry.shard_path("images", 0, 1)  # one file per image, not per shard


def test_names_parse_back():
    assert layout.shard_number("parquet/shard-00003-of-00016.parquet") == 3
    assert layout.image_id_of_name(f"images/00007/{ID}.jpg") == ID
    assert layout.image_id_of_name(f"sa1b/shard-00000-of-00001.tar:{ID}.jpg") == ID
    assert registry.format_of(f"images/00007/{ID}.jpg") == "images"
    assert registry.format_of("index/shard-00000-of-00001.jsonl") == "index"
    assert registry.format_of("coco/shard-00000-of-00001.json") == "coco"
    assert registry.format_of("notes.txt") is None
