import os

import pytest

from veilset.release import storage


def test_is_remote_and_join():
    assert storage.is_remote("gs://bucket/release") and not storage.is_remote("/data/release")
    assert storage.join("/data/r", "parquet/shard-00000-of-00001.parquet") == os.path.join(
        "/data/r", "parquet", "shard-00000-of-00001.parquet")


def test_atomic_write_creates_folders_and_leaves_no_temp(tmp_path):
    path = str(tmp_path / "a" / "b" / "f.bin")
    storage.atomic_write(path, b"one")
    storage.atomic_write(path, b"two")
    assert storage.read(path) == b"two" and storage.exists(path)
    assert os.listdir(tmp_path / "a" / "b") == ["f.bin"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "f.bin")
    storage.atomic_write(path, b"old")

    def boom(*_a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        storage.atomic_write(path, b"new")
    assert storage.read(path) == b"old" and os.listdir(tmp_path) == ["f.bin"]


def test_temp_names_carry_the_mark_and_stay_in_the_folder():
    name = storage.temp_name("/r/parquet/x.parquet")
    assert name.startswith("/r/parquet/.x.parquet") and storage.TMP_MARK in name


def test_move_remove_list(tmp_path):
    src, dst = str(tmp_path / "s" / "f"), str(tmp_path / "d" / "f")
    storage.atomic_write(src, b"x")
    storage.move(src, dst)
    assert not storage.exists(src) and storage.read(dst) == b"x"
    storage.atomic_write(str(tmp_path / "d" / "a"), b"")
    assert storage.list_files(str(tmp_path / "d")) == ["a", "f"]
    assert storage.list_files(str(tmp_path / "missing")) == []
    storage.remove(dst)
    storage.remove(dst)  # idempotent
    storage.remove(str(tmp_path / "d" / "a"))
    storage.remove_empty_dir(str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


def test_open_read_does_not_decompress_by_suffix(tmp_path):
    path = tmp_path / "looks.gz"
    path.write_bytes(b"plain bytes")
    with storage.open_read(str(path)) as fh:
        assert fh.read() == b"plain bytes"
