import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools.coco import COCO

from veilset.release import ids, layout, registry, shards
from veilset.segmentation.base import MaskAnnotation
from tests.factories import published

ALL = ("parquet", "coco", "sa1b")


@pytest.fixture()
def images():
    return [published(i) for i in range(5)]


def test_write_read_round_trip_every_format(tmp_path, images):
    written = shards.write_shard(str(tmp_path), 2, 4, ALL, images)
    assert [f.format for f in written] == ["index", "parquet", "coco", "sa1b"]
    assert all(f.images == 5 for f in written)
    for fmts in (("parquet",), ("sa1b",), ("coco",)):
        back = shards.read_shard(str(tmp_path), 2, 4, fmts)
        assert [dataclasses.asdict(b) for b in back] == [dataclasses.asdict(i) for i in sorted(images, key=lambda im: im.image_id)]


def test_rewrite_is_byte_identical(tmp_path, images):
    a = shards.write_shard(str(tmp_path / "a"), 0, 1, ALL, images)
    b = shards.write_shard(str(tmp_path / "b"), 0, 1, ALL, list(reversed(images)))
    assert [f.sha256 for f in a] == [f.sha256 for f in b]


def test_parquet_schema_and_huggingface_image_feature(tmp_path, images):
    shards.write_shard(str(tmp_path), 0, 1, ("parquet",), images)
    path = tmp_path / registry.shard_path("parquet", 0, 1)
    table = pq.read_table(path)
    assert table.column_names[:2] == ["image_id", "image"]
    assert table.column("image_id").to_pylist() == sorted(im.image_id for im in images)
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    first = ds[0]
    assert first["image"].size == (40, 30)
    assert first["masks"][0]["segmentation"]["size"] == [30, 40]
    mask_ids = [m["id"] for row in ds for m in row["masks"]]
    assert len(mask_ids) == 10 and len(set(mask_ids)) == 10 and all(0 <= i < 2**53 for i in mask_ids)
    frame = table.to_pandas()  # pandas keeps them exact (int64)
    assert [m["id"] for masks in frame["masks"] for m in masks] == mask_ids


def test_coco_loads_in_pycocotools_and_file_names_resolve(tmp_path, images):
    shards.write_shard(str(tmp_path), 1, 2, ("coco",), images)
    coco = COCO(str(tmp_path / registry.shard_path("coco", 1, 2)))
    assert len(coco.getImgIds()) == 5
    for img in coco.loadImgs(coco.getImgIds()):
        path = tmp_path / img["file_name"]
        assert path.is_file() and ids.sha256_hex(path.read_bytes()) == img["sha256"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        m = coco.annToMask(ann)
        assert m.shape == (30, 40) and int(m.sum()) == ann["area"]
    every_id = coco.getImgIds() + coco.getAnnIds()
    assert len(coco.getAnnIds()) == 10 and all(isinstance(i, int) and 0 <= i < 2**53 for i in every_id)
    assert all(float(i) == i for i in every_id)  # exact as doubles (JavaScript, jq, ...)
    for im in images:  # annotations found through the image's integer id, in mask order
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[ids.int_id(im.image_id)]))
        assert [a["id"] for a in anns] == [ids.annotation_id(im.image_id, k) for k in range(len(im.masks))]


def test_sa1b_tar_reads_with_webdataset(tmp_path, images):
    wds = pytest.importorskip("webdataset")
    shards.write_shard(str(tmp_path), 0, 1, ("sa1b",), images)
    samples = list(wds.WebDataset(str(tmp_path / registry.shard_path("sa1b", 0, 1)), shardshuffle=False))
    assert [s["__key__"] for s in samples] == sorted(im.image_id for im in images)
    meta = json.loads(samples[0]["json"])
    assert set(meta["image"]) == {"image_id", "veilset_id", "width", "height", "file_name"}
    for sample in samples:  # SA-1B's integer image_id, the string ID beside it, every id a safe JSON integer
        image = json.loads(sample["json"])["image"]
        assert image["veilset_id"] == sample["__key__"] and image["image_id"] == ids.int_id(sample["__key__"])
        ann_ids = [a["id"] for a in json.loads(sample["json"])["annotations"]]
        assert all(0 <= i < 2**53 for i in [image["image_id"], *ann_ids])
    ann = meta["annotations"][0]
    assert set(ann) == {"id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords",
                        "crop_box"}
    assert MaskAnnotation.from_sa1b(ann) == sorted(images, key=lambda i: i.image_id)[0].masks[0]


def test_the_next_generation_never_touches_the_files_of_the_last(tmp_path, images):
    # the release a build replaces stays whole until its manifest is swapped in: its files keep their bytes;
    # then housekeeping.remove_superseded removes what the old release listed and the new one does not
    shards.write_shard(str(tmp_path), 0, 1, ALL, images, generation=1)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    gone = images[0]
    shards.write_shard(str(tmp_path), 0, 1, ALL, images[1:], generation=2)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert (tmp_path / layout.image_path(gone.image_id, 0, 1)).exists()
    assert not (tmp_path / layout.image_path(gone.image_id, 0, 2)).exists()
    for rel in (registry.shard_path(f, 0, 1, 2) for f in ("parquet", "coco", "sa1b", "index")):
        assert gone.image_id.encode() not in (tmp_path / rel).read_bytes()


def test_no_temp_files_left_and_duplicates_refused(tmp_path, images):
    shards.write_shard(str(tmp_path), 0, 1, ALL, images)
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]
    with pytest.raises(ValueError, match="twice"):
        shards.write_shard(str(tmp_path), 0, 1, ALL, images + images[:1])


def test_formats_validated():
    with pytest.raises(ValueError, match="csv"):
        registry.validate_formats(["parquet", "csv"])
    assert registry.validate_formats(["sa1b", "parquet", "parquet"]) == ("parquet", "sa1b")


def test_every_image_carries_its_fingerprints_in_the_index_and_parquet(tmp_path, images):
    """pdq + pixels_sha256 of the published pixels: index rows, a Parquet column (pandas and HF load it), and a
    rewrite from a format without them (COCO) takes them from the index."""
    from veilset.release import fingerprint, index

    shards.write_shard(str(tmp_path), 0, 1, ALL, images)
    rows = index.parse((tmp_path / layout.index_path(0, 1, 0)).read_bytes())
    by_id = {im.image_id: im for im in images}
    for row in rows:
        fp = fingerprint.fingerprint_bytes(by_id[row["image_id"]].jpeg)
        assert (row["pdq"], row["pixels_sha256"]) == (fp.pdq_hex, fp.pixels_sha256)
    frame = pq.read_table(tmp_path / registry.shard_path("parquet", 0, 1)).to_pandas()
    assert list(frame["pdq"]) == [r["pdq"] for r in rows] and len(frame["pdq"][0]) == 64
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / registry.shard_path("parquet", 0, 1)),
                               split="train")
    assert ds[0]["pixels_sha256"] == rows[0]["pixels_sha256"]
    key, new_key = shards.ShardKey(0, 1, 0), shards.ShardKey(0, 1, 1)
    rewritten = shards.without(key, new_key, ("coco",), shards.fetcher(str(tmp_path)), frozenset({rows[0]["image_id"]}))
    kept = index.parse(rewritten[index.path(new_key)])
    assert [(r["pdq"], r["pixels_sha256"]) for r in kept] == [(r["pdq"], r["pixels_sha256"]) for r in rows[1:]]


def test_a_release_without_fingerprints_still_reads_and_rewrites(tmp_path, images):
    old = [dataclasses.replace(im, pdq="", pixels_sha256="") for im in images]
    shards.write_shard(str(tmp_path), 0, 1, ("parquet",), old)
    back = shards.read_shard(str(tmp_path), 0, 1, ("parquet",), generation=0)
    assert all(im.pdq == "" and im.pixels_sha256 == "" for im in back) and len(back) == 5
