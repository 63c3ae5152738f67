import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from veilset.detectors import evaluate
from veilset.detectors.evaluate import FP, IGNORED, TP, Tally, match_image
from veilset import cli
from tests.detectors.kernels import CONFIDENT


def test_match_greedy_by_score():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    det = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [50, 50, 60, 60]])
    m = match_image(gt, [False, False], det, [0.5, 0.9, 0.8, 0.7], 0.5)
    # the 0.9 box takes GT 0 first; the exact 0.5 box is then a duplicate (FP)
    assert m.det_outcomes == (FP, TP, TP, FP)
    assert m.gt_hit_by == (1, 2)


def test_match_prefers_highest_iou_among_unmatched():
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10]])
    m = match_image(gt, [False, False], np.array([[2, 0, 12, 10]]), [0.9], 0.5)
    assert m.gt_hit_by == (-1, 0)


def test_crowd_boxes_are_neither_hit_nor_miss():
    gt = np.array([[0, 0, 10, 10], [100, 100, 120, 120]])
    det = np.array([[100, 100, 120, 120], [200, 200, 210, 210]])
    m = match_image(gt, [False, True], det, [0.9, 0.8], 0.5)
    assert m.det_outcomes == (IGNORED, FP)
    assert m.gt_hit_by == (-1, -1)
    t = Tally()
    t.add(m, [0.9, 0.8], [["g"], ["g"]], [False, True], 0.01)
    s = t.summary()
    assert t.gt_total == 1 and s["recall"] == 0.0 and s["fp"] == 1 and s["precision"] == 0.0
    assert t.groups == {"g": [0, 1]}


def test_iou_threshold_and_empty_cases():
    gt = np.array([[0, 0, 10, 10]])
    det = np.array([[0, 0, 10, 20]])  # IoU 0.5
    assert match_image(gt, [False], det, [1.0], 0.5).det_outcomes == (TP,)
    assert match_image(gt, [False], det, [1.0], 0.51).det_outcomes == (FP,)
    assert match_image(np.zeros((0, 4)), [], det, [1.0], 0.5).det_outcomes == (FP,)
    assert match_image(gt, [False], np.zeros((0, 4)), [], 0.5).gt_hit_by == (-1,)
    with pytest.raises(ValueError, match="0"):
        match_image(gt, [False], det, [1.0], 0.0)


def test_curve_is_prefix_of_the_matching():
    t = Tally()
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    det = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 0, 30, 10]])
    scores = [0.9, 0.6, 0.3]
    t.add(match_image(gt, [False, False], det, scores, 0.5), scores, [["a"], ["a"]], [False, False], 0.0)
    curve = t.curve()
    assert [p["threshold"] for p in curve] == [0.3, 0.6, 0.9]
    assert [p["recall"] for p in curve] == [1.0, 0.5, 0.5]
    assert [p["precision"] for p in curve] == pytest.approx([2 / 3, 0.5, 1.0])
    assert t.summary(0.5)["recall"] == 0.5


@pytest.fixture(scope="module")
def tiny_coco(tmp_path_factory):
    """Two images: the astronaut (one face, plus a crowd box) and a blank one (no faces)."""
    root = tmp_path_factory.mktemp("coco")
    (root / "set").mkdir()
    Image.fromarray(skimage.data.astronaut()).save(root / "set" / "astro.png")
    Image.fromarray(np.full((200, 300, 3), 127, np.uint8)).save(root / "set" / "blank.png")
    coco = {
        "images": [{"id": 1, "file_name": "set/astro.png", "width": 512, "height": 512},
                   {"id": 2, "file_name": "set/blank.png", "width": 300, "height": 200}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [180, 60, 90, 115], "iscrowd": 0,
             "wider_subsets": ["easy", "medium"]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [400, 400, 20, 20], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "face"}],
    }
    ann = root / "ann.json"
    ann.write_text(json.dumps(coco))
    return root, ann


def test_eval_cli_json(tiny_coco, tmp_path, capsys):
    root, ann = tiny_coco
    plot = tmp_path / "pr.png"
    # threshold 0.5: a precision of exactly 1 must not hang on low-score background peaks (tests/detectors/kernels.py)
    rc = cli.main(["eval", "faces", "--images", str(root), "--annotations", str(ann), "--json", "--plot", str(plot),
                   "--detector", f"centerface:threshold={CONFIDENT}"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["recall"] == 1.0 and out["precision"] == 1.0
    assert out["images"] == 2 and out["boxes"] == 1 and out["ms_per_image"] > 0
    assert out["recall_by_group"]["wider_medium"] == {"recall": 1.0, "hits": 1, "boxes": 1}
    assert out["identity"]["name"] == "centerface" and out["detector"] == f"centerface:threshold={CONFIDENT}"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_cli_table_and_iou(tiny_coco, capsys):
    root, ann = tiny_coco
    assert cli.main(["eval", "faces", "--images", str(root), "--annotations", str(ann), "--iou", "0.99",
                     "--detector", "centerface:threshold=0.5"]) == 0
    text = capsys.readouterr().out
    assert "recall" in text and "0.0000" in text and "recall[set]" in text


@pytest.mark.parametrize("extra, needle", [
    (["--iou", "1.5"], "1.5"),
    (["--detector", "plates"], "license_plate"),
    (["--detector", "centerface:threshold=9"], "'9'"),
    (["--limit", "0"], "--limit"),
])
def test_eval_cli_rejects_bad_options(tiny_coco, capsys, extra, needle):
    root, ann = tiny_coco
    assert cli.main(["eval", "faces", "--images", str(root), "--annotations", str(ann), *extra]) == 2
    assert needle in capsys.readouterr().err


def test_eval_cli_missing_files(tmp_path, capsys):
    assert cli.main(["eval", "plates", "--images", str(tmp_path / "nope"), "--annotations", "x.json"]) == 2
    assert "nope" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert cli.main(["eval", "plates", "--images", str(tmp_path), "--annotations", str(bad)]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_evaluate_reports_missing_image(tmp_path):
    coco = {"images": [{"id": 1, "file_name": "gone.jpg", "width": 10, "height": 10}], "annotations": []}

    class Never:
        label = "face"

        def detect(self, rgb):
            raise AssertionError

    with pytest.raises(ValueError, match="gone.jpg"):
        evaluate.evaluate(Never(), str(tmp_path), coco)


def test_only_the_detectors_category_is_ground_truth(tiny_coco):
    root, ann = tiny_coco
    coco = json.loads(ann.read_text())
    coco["categories"].append({"id": 2, "name": "license_plate"})
    coco["annotations"].append({"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 10, 50, 20], "iscrowd": 0})

    class Fixed:
        label = "face"

        def detect(self, rgb):
            from veilset.detectors.base import Detection
            return [Detection("face", (180.0, 60.0, 270.0, 175.0), 0.9, "fixed")] if rgb.shape[0] == 512 else []

    tally = evaluate.evaluate(Fixed(), str(root), coco)
    assert tally.gt_total == 1 and tally.summary()["recall"] == 1.0
