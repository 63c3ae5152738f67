import os

import pytest

from veilset.pipeline.ingest import expand_inputs


def test_folders_recursive_globs_files_and_exclusions(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for rel in ("a/1.jpg", "a/b/2.png", "a/.hidden.jpg", "c.jpg", "d weird name (1).JPG"):
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "a" / "out").mkdir()
    (tmp_path / "a" / "out" / "published.jpg").write_bytes(b"x")
    got = expand_inputs([str(tmp_path / "a"), str(tmp_path / "*.jpg"), str(tmp_path / "d weird name (1).JPG"),
                         str(tmp_path / "c.jpg")], exclude_under=str(tmp_path / "a" / "out"))
    rel = [os.path.relpath(p, tmp_path) for p in got]
    assert rel == ["a/1.jpg", "a/b/2.png", "c.jpg", "d weird name (1).JPG"]


def test_missing_inputs_name_the_path(tmp_path):
    with pytest.raises(ValueError, match="nope"):
        expand_inputs([str(tmp_path / "nope")])
    with pytest.raises(ValueError, match="no input files"):
        expand_inputs([str(tmp_path / "*.png")])
