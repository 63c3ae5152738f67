"""Safe builds (issue §2): only the image is published, on every byte path, through a real build."""
from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from tests.crafted_jpeg import SECRET, clean_jpeg, crafted
from veilset.cli import main
from veilset.release import ids, jpeg
from veilset.release.manifest import load_manifest

pytestmark = pytest.mark.slow

BARE = ["--workers", "1", "--masks", "none", "--plate-detector", "none", "--face-detector", "none"]


def _published_jpegs(release) -> dict[str, bytes]:
    """Every published JPEG of the release: images/ files and Parquet image bytes."""
    out = {}
    for root, _dirs, files in os.walk(release):
        for f in files:
            if f.endswith(".jpg"):
                out[os.path.join(root, f)] = open(os.path.join(root, f), "rb").read()
    for f in (release / "parquet").glob("*.parquet"):
        for row in pq.read_table(f).to_pylist():
            out[f"{f.name}:{row['image_id']}"] = row["image"]["bytes"]
    return out


def test_crafted_jpegs_come_out_clean_or_are_rejected_with_a_reason(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    files = dict(crafted(), clean=clean_jpeg(161, 120))
    for name, data in files.items():
        (src / f"{name}.jpg").write_bytes(data)
    out = tmp_path / "r"
    assert main(["build", str(src), "--output", str(out), "--formats", "parquet,coco", *BARE]) == 0
    m = load_manifest(str(out))
    rejected = {os.path.basename(json.loads(line)["source"]): json.loads(line)
                for line in (out / m["rejects"]).read_text().splitlines()}
    published = _published_jpegs(out)
    published_ids = {os.path.basename(k).split(":")[-1][:-4] for k in published}
    # each crafted file is published, rejected with a reason, or (the same pixels as a published one, once its
    # hidden bytes are gone) counted as a duplicate of it: never two of these, never none
    accounted = 0
    for name, data in files.items():
        image_id = ids.image_id_for(ids.sha256_hex(data))
        assert not (image_id in published_ids and f"{name}.jpg" in rejected), name
        accounted += image_id in published_ids or f"{name}.jpg" in rejected
        if f"{name}.jpg" in rejected:
            assert rejected[f"{name}.jpg"]["reason"], name
    assert len(files) - accounted == m["counts"]["duplicates"]
    assert m["counts"]["input"] == m["counts"]["published"] + m["counts"]["rejected"] + m["counts"]["duplicates"]
    assert "clean" not in {n[:-4] for n in rejected}
    for where, data in published.items():
        assert jpeg.strict_violations(data) == [], where
    for root, _dirs, names in os.walk(out):
        for f in names:
            if f != m["rejects"]:
                assert SECRET not in open(os.path.join(root, f), "rb").read(), f
