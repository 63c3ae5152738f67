import pytest

from veilset.release import ids


def test_image_id_is_prefix_of_content_hash_and_stable():
    h = ids.sha256_hex(b"hello")
    assert ids.image_id_for(h) == "sa_" + h[:32]
    assert ids.image_id_for(ids.sha256_hex(b"hello")) == ids.image_id_for(h)
    assert ids.is_valid_image_id(ids.image_id_for(h))


@pytest.mark.parametrize("bad", ["", "sa_", "sa_" + "g" * 32, "sa_" + "a" * 31, "sa_" + "a" * 33, "SA_" + "a" * 32,
                                 "../../etc/passwd", "sa_" + "a" * 32 + "\n", "sa_" + "a" * 31 + "'", None, 5])
def test_invalid_ids_rejected(bad):
    assert not ids.is_valid_image_id(bad)


def test_id_pattern_finds_ids_in_text_only_at_word_boundaries():
    good = "sa_" + "0123456789abcdef" * 2
    text = f"please remove {good}, and xsa_{'1' * 32} and sa_{'2' * 40}"
    assert ids.ID_PATTERN.findall(text) == [good]


def test_shard_is_deterministic_and_spread():
    shard_ids = [ids.image_id_for(ids.sha256_hex(str(i).encode())) for i in range(2000)]
    counts = [0] * 8
    for i in shard_ids:
        s = ids.shard_of(i, 8)
        assert s == ids.shard_of(i, 8)
        counts[s] += 1
    assert min(counts) > 150  # roughly uniform


def test_shard_of_validates():
    with pytest.raises(ValueError, match="num_shards"):
        ids.shard_of("sa_" + "a" * 32, 0)
    with pytest.raises(ValueError, match="not a valid image ID"):
        ids.shard_of("nope", 4)


def test_int_id_and_annotation_ids():
    image_id = "sa_" + "00000000000a" + "f" * 20
    assert ids.int_id(image_id) == 10 and ids.shard_of(image_id, 4) == 2
    assert ids.annotation_id(image_id, 3) == 10 * ids.ANNOTATIONS_PER_IMAGE + 3
    with pytest.raises(ValueError, match="more than"):
        ids.annotation_id(image_id, ids.ANNOTATIONS_PER_IMAGE)
