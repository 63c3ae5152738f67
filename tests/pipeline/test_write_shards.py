"""The build's shard writer (``WriteShards``, called directly: no Beam run): an image whose integer ids clash with
an earlier image's is a reject ``write:id_clash``, and the shard is written without it."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle

import numpy as np
from apache_beam.pvalue import TaggedOutput

from veilset.pipeline.graph import REJECTS, StagedImage, WriteShards
from veilset.pipeline.records import Reject
from veilset.release import ids, registry
from veilset.release.records import ShardFile
from tests.factories import published


def _stage(tmp_path, images) -> list[StagedImage]:
    staged = []
    for n, im in enumerate(images):
        path = str(tmp_path / f"{im.image_id}.pkl")
        with open(path, "wb") as fh:
            pickle.dump(im, fh)
        staged.append(StagedImage(im.image_id, 0, path, f"/photos/{n}.jpg"))
    return staged


def test_a_clashing_image_is_rejected_and_the_rest_published(tmp_path):
    a, b = (dataclasses.replace(published(i), image_id="sa_" + "00000000000a" + ch * 20)
            for i, ch in ((1, "a"), (2, "b")))
    c = published(3)
    out = tmp_path / "release"
    staged = _stage(tmp_path, [b, c, a])
    results = list(WriteShards(str(out), 1, ("parquet", "coco", "sa1b"), 1).process((0, staged)))
    rejects = [r.value for r in results if isinstance(r, TaggedOutput)]
    assert [r.tag for r in results if isinstance(r, TaggedOutput)] == [REJECTS]
    assert rejects == [Reject("/photos/0.jpg", "write", "id_clash",
                              "COCO image id 10 is taken by another image of its shard")]
    files = [r for r in results if isinstance(r, ShardFile)]
    assert [f.images for f in files] == [2, 2, 2, 2]
    doc = json.loads((out / registry.shard_path("coco", 0, 1, 1)).read_text())
    assert sorted(im["image_id"] for im in doc["images"]) == sorted([a.image_id, c.image_id])
    assert len({x["id"] for x in doc["images"]}) == 2 and all(x["id"] < 2**53 for x in doc["annotations"])


def test_a_forced_annotation_id_clash_is_rejected(tmp_path, monkeypatch):
    c, d = published(3), published(4)
    first, second = sorted((c, d), key=lambda im: im.image_id)
    real = ids.annotation_id
    monkeypatch.setattr(ids, "annotation_id", lambda iid, k: 77 if k == 0 else real(iid, k))
    results = list(WriteShards(str(tmp_path / "release"), 1, ("coco",), 1).process((0, _stage(tmp_path, [c, d]))))
    rejects = [r.value for r in results if isinstance(r, TaggedOutput)]
    source = "/photos/0.jpg" if second is c else "/photos/1.jpg"
    assert rejects == [Reject(source, "write", "id_clash", "annotation id 77 (its mask 0) is taken by another "
                                                           "image of its shard")]
    assert [f.images for f in results if isinstance(f, ShardFile)] == [1, 1]


def test_a_build_with_a_clash_counts_the_reject_and_stays_intact(tmp_path, monkeypatch):
    """Through a real (in-process) build: the clash is forced on one image; the manifest counts it as a reject
    ``write:id_clash`` and the release passes the audit's integrity check."""
    from PIL import Image

    from veilset.audit.integrity import check_integrity
    from veilset.audit.release import Release
    from veilset.cli import main

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for n in range(3):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(photos / f"{n}.png")
    real = ids.clashes
    loser = max(ids.image_id_for(ids.sha256_hex(p.read_bytes())) for p in photos.iterdir())

    def one_clash(images):
        images = sorted(images)
        found = real(images)
        if loser in [i for i, _ in images]:  # it "shares" the first image's COCO id
            found[loser] = (images[0][0], "COCO image id 1")
        return found

    monkeypatch.setattr(ids, "clashes", one_clash)
    out = tmp_path / "release"
    assert main(["build", str(photos), "--output", str(out), "--workers", "1", "--shards", "1",
                 "--formats", "parquet,coco,sa1b", "--masks", "none", "--plate-detector", "none",
                 "--face-detector", "none"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["published"] == 2 and manifest["counts"]["rejected"] == 1
    assert manifest["rejects_by_reason"] == {"write:id_clash": 1}
    monkeypatch.setattr(ids, "clashes", real)
    result = check_integrity(Release(str(out)))
    assert result.status == "pass", [f.line() for f in result.findings]
