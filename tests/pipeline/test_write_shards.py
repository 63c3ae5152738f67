"""The build's shard writer (``WriteShards``, called directly: no Beam run): an image whose integer ids clash with
an earlier image's is a reject ``write:id_clash``, and the shard is written without it."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle

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
    results = list(WriteShards(str(out), 1, ("parquet", "coco", "sa1b")).process((0, staged)))
    rejects = [r.value for r in results if isinstance(r, TaggedOutput)]
    assert [r.tag for r in results if isinstance(r, TaggedOutput)] == [REJECTS]
    assert rejects == [Reject("/photos/0.jpg", "write", "id_clash",
                              "COCO image id 10 is taken by another image of its shard")]
    files = [r for r in results if isinstance(r, ShardFile)]
    assert [f.images for f in files] == [2, 2, 2, 2]
    doc = json.loads((out / registry.shard_path("coco", 0, 1)).read_text())
    assert sorted(im["image_id"] for im in doc["images"]) == sorted([a.image_id, c.image_id])
    assert len({x["id"] for x in doc["images"]}) == 2 and all(x["id"] < 2**53 for x in doc["annotations"])
    assert not [s for s in staged if os.path.exists(s.staging_path)]  # the rejected image's staged copy too


def test_a_forced_annotation_id_clash_is_rejected(tmp_path, monkeypatch):
    c, d = published(3), published(4)
    first, second = sorted((c, d), key=lambda im: im.image_id)
    real = ids.annotation_id
    monkeypatch.setattr(ids, "annotation_id", lambda iid, k: 77 if k == 0 else real(iid, k))
    results = list(WriteShards(str(tmp_path / "release"), 1, ("coco",)).process((0, _stage(tmp_path, [c, d]))))
    rejects = [r.value for r in results if isinstance(r, TaggedOutput)]
    source = "/photos/0.jpg" if second is c else "/photos/1.jpg"
    assert rejects == [Reject(source, "write", "id_clash", "annotation id 77 (its mask 0) is taken by another "
                                                           "image of its shard")]
    assert [f.images for f in results if isinstance(f, ShardFile)] == [1, 1]
