import numpy as np
import pytest

from veilset.detectors import ops


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30]])
    m = ops.iou_matrix(a, b)
    assert m.shape == (2, 3)
    assert m[0] == pytest.approx([50 / 150, 1.0, 0.0])
    assert m[1] == pytest.approx([0.0, 0.0, 0.0])  # empty box: no NaN


def test_nms_keeps_best_and_disjoint():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10.5]])
    scores = np.array([0.5, 0.9, 0.3, 0.8])
    keep = ops.nms(boxes, scores, 0.5)
    assert keep.tolist() == [1, 2]
    assert ops.nms(boxes, scores, 1.0).tolist() == [1, 3, 0, 2]
    assert ops.nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(ValueError, match="1.5"):
        ops.nms(boxes, scores, 1.5)


def test_clip_and_expand():
    b = ops.expand_boxes(np.array([[10, 10, 20, 30]]), 0.5, 100, 35)
    assert b.tolist() == [[5, 0, 25, 35]]
    assert ops.clip_boxes(np.array([[-5, -5, 200, 50]]), 100, 40).tolist() == [[0, 0, 100, 40]]
    with pytest.raises(ValueError, match="-0.1"):
        ops.expand_boxes(b, -0.1, 10, 10)


def test_fit_size_and_mapping_round_trip():
    m = ops.fit_size(1500, 1000, 1280)
    assert (m.net_width, m.net_height) == (1280, 864)  # 853.3 rounded up to a multiple of 32
    m2 = ops.fit_size(500, 375, 1280)
    assert (m2.net_width, m2.net_height) == (512, 384)
    up = ops.fit_size(600, 400, 1280, scale=2.0)
    assert (up.net_width, up.net_height) == (1216, 800)
    src = np.array([[100.0, 200.0, 300.0, 500.0], [0, 0, 1500, 1000]])
    assert np.allclose(m.to_source(m.to_net(src)), src)
    with pytest.raises(ValueError, match="0x10"):
        ops.fit_size(0, 10, 100)


def test_resize_maps_a_drawn_square_back():
    img = np.zeros((1000, 1500, 3), np.uint8)
    img[300:500, 600:900] = 255
    m = ops.fit_size(1500, 1000, 640)
    small = ops.resize_to(img, m)
    assert small.shape == (448, 640, 3)
    ys, xs = np.nonzero(small[:, :, 0] > 127)
    box_net = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float)
    back = m.to_source(box_net)[0]
    assert np.allclose(back, [600, 300, 900, 500], atol=3)


def test_grid_tiles_cover_and_overlap():
    tiles = ops.grid_tiles(1000, 600, 2, overlap=0.2)
    assert len(tiles) == 4
    assert (tiles[0].x0, tiles[0].y0) == (0, 0) and (tiles[-1].x1, tiles[-1].y1) == (1000, 600)
    assert tiles[0].x1 == 550 and tiles[1].x0 == 450  # 500 + 50 each side
    covered = np.zeros((600, 1000), bool)
    for t in tiles:
        covered[t.y0:t.y1, t.x0:t.x1] = True
    assert covered.all()
    with pytest.raises(ValueError, match="grid"):
        ops.grid_tiles(10, 10, 0)


def test_tiled_passes_map_boxes_to_source_and_merge():
    img = np.zeros((600, 1000, 3), np.uint8)
    img[280:320, 480:520] = 255  # a blob in the overlap of all four tiles

    def detect(crop):
        ys, xs = np.nonzero(crop[:, :, 0])
        if not len(xs):
            return np.zeros((0, 4)), np.zeros(0)
        return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], float), np.array([0.9])

    passes = ops.tiled_passes(img, detect, 2)
    assert all(np.allclose(b, [[480, 280, 520, 320]]) for b, _ in passes)
    boxes, scores = ops.merge_passes(passes, 0.5)
    assert boxes.tolist() == [[480, 280, 520, 320]] and scores.tolist() == [0.9]


def test_box_vote_averages_each_nms_group_by_score_and_keeps_its_scores():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [100, 100, 110, 110], [0, 1, 10, 11]], float)
    scores = np.array([0.6, 0.2, 0.5, 0.2])
    voted, vscores = ops.box_vote(boxes, scores, 0.3)
    keep = ops.nms(boxes, scores, 0.3)
    assert vscores.tolist() == scores[keep].tolist() == [0.6, 0.5]  # same groups and scores as NMS
    # group of box 0: boxes 0, 1 (IoU 0.67) and 3 (IoU 0.82), weights 0.6, 0.2, 0.2
    assert voted[0] == pytest.approx([(0 * .6 + 2 * .2 + 0 * .2), 0.2, (10 * .6 + 12 * .2 + 10 * .2), 10.2])
    assert voted[1].tolist() == [100, 100, 110, 110]  # alone: unchanged


def test_box_vote_edge_cases():
    b, s = ops.box_vote(np.zeros((0, 4)), np.zeros(0), 0.3)
    assert b.shape == (0, 4) and s.shape == (0,)
    b, s = ops.box_vote(np.array([[5, 5, 5, 5.0]]), np.array([0.0]), 0.3)  # empty box, zero score: kept as is
    assert b.tolist() == [[5, 5, 5, 5]] and s.tolist() == [0.0]
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        ops.box_vote(np.zeros((2, 4)), np.zeros(1), 0.3)
    with pytest.raises(ValueError, match="1.5"):
        ops.box_vote(np.zeros((1, 4)), np.zeros(1), 1.5)


def test_merge_passes_by_vote_and_bad_method():
    passes = [(np.array([[0, 0, 10, 10.0]]), np.array([0.75])), (np.array([[4, 0, 14, 10.0]]), np.array([0.25]))]
    b, s = ops.merge_passes(passes, 0.3, "vote")
    assert b.tolist() == [[1, 0, 11, 10]] and s.tolist() == [0.75]
    b, s = ops.merge_passes(passes, 0.3, "nms")
    assert b.tolist() == [[0, 0, 10, 10]]
    with pytest.raises(ValueError, match="'mean'"):
        ops.merge_passes(passes, 0.3, "mean")


def test_box_vote_min_score_forms_only_the_groups_above_it_and_changes_none_of_them():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (300, 2))], axis=1)
    scores = rng.uniform(0, 1, 300)
    full_b, full_s = ops.box_vote(boxes, scores, 0.3)
    cut_b, cut_s = ops.box_vote(boxes, scores, 0.3, min_score=0.6)
    above = full_s >= 0.6
    assert cut_s.tolist() == full_s[above].tolist() and np.array_equal(cut_b, full_b[above])
