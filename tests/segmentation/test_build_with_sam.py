"""End to end: `veilset build --masks sam:...` with a small random SAM saved to disk and loaded as a user would."""
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import pyarrow.parquet as pq  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402

from veilset.cli import main  # noqa: E402
from veilset.release import ids  # noqa: E402
from veilset.release.manifest import load_manifest  # noqa: E402
from veilset.segmentation.rle import decode_rle  # noqa: E402
from veilset.segmentation.sam import file_sha256, random_sam  # noqa: E402
from tests import imagegen  # noqa: E402

pytestmark = pytest.mark.slow
LOW = "img_size=256,points_per_side=8,pred_iou_thresh=0.5,stability_score_thresh=0.6,box_nms_thresh=0.9"


def test_build_with_small_sam_writes_sa1b_annotations_everywhere(tmp_path):
    ckpt = tmp_path / "sam_vit_tiny.pth"
    torch.save(random_sam("vit_tiny", seed=0, img_size=256).state_dict(), ckpt)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(imagegen.astronaut()).resize((192, 192)).save(photos / "astronaut.png")
    yy, xx = np.mgrid[0:120, 0:160]
    Image.fromarray(np.stack([xx, yy, xx + yy], -1).astype(np.uint8)).save(photos / "gradient.png")
    out = tmp_path / "release"
    spec = f"sam:vit_tiny:{ckpt}:preset=default,device=cpu,{LOW}"
    assert main(["build", str(photos), "--output", str(out), "--workers", "1", "--plate-detector", "none",
                 "--masks", spec, "--formats", "parquet,coco,sa1b"]) == 0
    m = load_manifest(str(out))
    assert m["counts"]["published"] == 2
    assert m["models"]["masks"]["checkpoint_sha256"] == file_sha256(str(ckpt))
    parquet = [e for e in m["shards"] if e["format"] == "parquet"][0]
    rows = pq.read_table(out / parquet["path"]).to_pylist()
    total = 0
    for row in rows:
        for ann in row["masks"]:
            mask = decode_rle(ann["segmentation"])
            assert mask.shape == (row["height"], row["width"])
            assert int(mask.sum()) == ann["area"] > 0
            assert 0.5 < ann["predicted_iou"] and 0.6 < ann["stability_score"] <= 1.0
            assert len(ann["point_coords"]) == 1 and len(ann["crop_box"]) == 4
            total += 1
    assert total > 0, "the lowered thresholds must let masks through"
    coco = COCO(str(out / [e for e in m["shards"] if e["format"] == "coco"][0]["path"]))
    assert len(coco.getAnnIds()) == total
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert coco.annToMask(ann).sum() == ann["area"]
    with tarfile.open(out / [e for e in m["shards"] if e["format"] == "sa1b"][0]["path"]) as tar:
        metas = [json.load(tar.extractfile(i)) for i in tar if i.name.endswith(".json")]
    assert sum(len(meta["annotations"]) for meta in metas) == total
    assert {meta["image"]["veilset_id"] for meta in metas} == {r["image_id"] for r in rows}
    assert all(meta["image"]["image_id"] == ids.int_id(meta["image"]["veilset_id"]) for meta in metas)
