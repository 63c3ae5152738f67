import hashlib

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
    # the documented recipe: first 53 bits of sha256(f"{image_id}/{k}")
    digest = hashlib.sha256(f"{image_id}/3".encode()).digest()
    assert ids.annotation_id(image_id, 3) == int.from_bytes(digest[:8], "big") >> 11 == 7163413083211702
    assert ids.annotation_id("sa_" + "0" * 32, 0) == 9003546817661313  # fixed examples: the scheme must not drift
    with pytest.raises(ValueError, match="mask index"):
        ids.annotation_id(image_id, -1)


def test_integer_ids_are_below_2_53_deterministic_and_spread():
    sample = [ids.image_id_for(ids.sha256_hex(str(i).encode())) for i in range(500)]
    image_ints = [ids.int_id(i) for i in sample]
    ann = [ids.annotation_id(i, k) for i in sample for k in range(20)]
    assert max(image_ints) < 2**48 and max(ann) < ids.SAFE_INT_LIMIT == 2**53
    assert max(ann) > 2**52  # all 53 bits are used
    assert len(set(image_ints)) == len(sample) and len(set(ann)) == len(ann)
    assert ann == [ids.annotation_id(i, k) for i in sample for k in range(20)]
    assert ids.int_id("sa_" + "f" * 32) == 2**48 - 1
    assert all(ids.shard_of(i, 7) == ids.int_id(i) % 7 for i in sample)  # the shard key is unchanged


def test_clashes_keep_the_first_image_by_id():
    a, b, c = ("sa_" + "00000000000a" + ch * 20 for ch in "abc")
    other = "sa_" + "1" * 32
    assert ids.clashes([(other, 3), (a, 2)]) == {}
    assert ids.clashes([(c, 1), (a, 2), (b, 0), (other, 3)]) == {b: (a, "COCO image id 10"),
                                                                 c: (a, "COCO image id 10")}


def test_clashing_annotation_ids_are_found(monkeypatch):
    a, b = "sa_" + "1" * 32, "sa_" + "2" * 32
    real = ids.annotation_id
    monkeypatch.setattr(ids, "annotation_id", lambda iid, k: 5 if (iid, k) in ((a, 1), (b, 0)) else real(iid, k))
    assert ids.clashes([(b, 2), (a, 2)]) == {b: (a, "annotation id 5 (its mask 0)")}
    monkeypatch.setattr(ids, "annotation_id", lambda iid, k: 5)
    assert ids.clashes([(a, 2)]) == {a: (a, "annotation id 5 (its mask 1)")}  # within one image too
