from __future__ import annotations

import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from veilset.audit.findings import FAIL, MASKS, PASS
from veilset.audit.masks import RleError, check_annotation, check_masks, rle_runs
from veilset.audit.release import Release
from veilset.release import ids
from tests.audit.conftest import coco_path, load_json, save_json


def _ann(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"id": 7, "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode()},
            "area": int(mask.sum()), "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def test_rle_runs_match_pycocotools():
    mask = np.zeros((30, 40), bool)
    mask[3:17, 5:33] = True
    mask[20:25, 0:4] = True
    ann = _ann(mask)
    runs = rle_runs(ann["segmentation"]["counts"])
    assert sum(runs) == 30 * 40 and sum(runs[1::2]) == mask.sum()
    assert check_annotation(ann, 40, 30) == []
    with pytest.raises(RleError):
        rle_runs(ann["segmentation"]["counts"][:-1] + "\x7f")


def test_bad_annotations_are_described():
    mask = np.zeros((30, 40), bool)
    mask[3:17, 5:33] = True
    ann = _ann(mask)
    assert "size [30, 40]" in check_annotation(ann, 41, 30)[0]
    assert "area" in check_annotation(dict(ann, area=5), 40, 30)[0]
    assert "bbox" in check_annotation(dict(ann, bbox=[0, 0, 3, 3]), 40, 30)[0]
    short = dict(ann, segmentation={"size": [30, 40], "counts": ann["segmentation"]["counts"][:-2]})
    assert "decode" in check_annotation(short, 40, 30)[0] or "cover" in check_annotation(short, 40, 30)[0]


def test_good_release_masks_decode(built):
    result = check_masks(Release(built.root))
    assert result.status == PASS, [f.line() for f in result.findings]


def test_broken_rle_in_a_shard_is_found(built, copy_release):
    root = copy_release()
    iid = built.image_ids["coffee"]
    path = coco_path(root, iid)
    doc = load_json(path)
    int_id = ids.int_id(iid)
    ann = next(a for a in doc["annotations"] if a["image_id"] == int_id)
    ann["segmentation"]["counts"] = ann["segmentation"]["counts"][: len(ann["segmentation"]["counts"]) // 2]
    save_json(path, doc)
    result = check_masks(Release(root))
    assert result.status == FAIL
    rel = os.path.relpath(path, root).replace(os.sep, "/")
    [finding] = result.findings
    assert (finding.check, finding.file, finding.image_id) == (MASKS, rel, iid)
    assert f"mask {ann['id']}" in finding.message
