"""The resolution policy (detectors/tiling.py) as pure geometry: which windows, at which scale, for which image."""
import math

import numpy as np
import pytest

from veilset.detectors import tiling
from veilset.detectors.base import MultiPassDetector, Pass

CENTERFACE = Pass(grid=1, max_side=1280, max_upscale=2.0)  # centerface's default pass
CLPDET = Pass(grid=1, max_side=1280, tiling=tiling.PLATES)
PPTEXT = Pass(grid=1, max_side=640, tiling=tiling.TEXT_LINES)
PASSES = [CENTERFACE, CLPDET, PPTEXT]


def windows(width, height, p):
    return MultiPassDetector().windows(width, height, p)


@pytest.mark.parametrize("p", PASSES)
@pytest.mark.parametrize("size", [(1500, 1000), (1000, 1500), (1500, 1500), (512, 512), (1500, 750), (700, 1400),
                                  (1400, 200), (64, 1500), (1, 1)])
def test_ordinary_photos_keep_one_pass(p, size):
    assert windows(*size, p) is None  # exactly the pass as before: same pixels in, same boxes out


@pytest.mark.parametrize("p", PASSES)
def test_larger_or_longer_images_are_searched_at_the_working_scale(p):
    working = tiling.working_scale(lambda w, h: MultiPassDetector().pass_scale(w, h, p), p.tiling)
    reference = p.max_side / p.tiling.reference_side
    assert working == pytest.approx(2.0 if p is CLPDET else reference)  # clp_det: the floor for 16-px plates
    assert p.tiling.reference_side == (1500 if p is CENTERFACE else 1280)  # plates: the dev photos' 1280 px
    if p is not CLPDET:  # a 3:2 picture with the build's 1500-px short side fits one network input at the working scale
        [w] = windows(2250, 1500, p)
        assert (w.x0, w.y0, w.x1, w.y1, w.level) == (0, 0, 2250, 1500, 0) and w.scale == pytest.approx(working)
    assert windows(1500, 1500, Pass(grid=1, max_side=1280, tiling=None)) is None
    assert windows(12000, 1500, Pass(grid=1, max_side=None)) is None  # native size: nothing is ever shrunk


def _covering_window(box, wins, scale_ok):
    """A window holding the box whole, clear of the cut band along its inner borders, where scale_ok(window)."""
    x0, y0, x1, y1 = box
    for w in wins:
        left, top, right, bottom = w.inner
        if not (w.x0 <= x0 and w.y0 <= y0 and x1 <= w.x1 and y1 <= w.y1):
            continue
        if (left and x0 - w.x0 < w.cut) or (top and y0 - w.y0 < w.cut) or (right and w.x1 - x1 < w.cut) \
                or (bottom and w.y1 - y1 < w.cut):
            continue
        if scale_ok(w):
            return w
    return None


@pytest.mark.parametrize("p", PASSES)
@pytest.mark.parametrize("size", [(12000, 1500), (1500, 9000), (8000, 800), (1333, 8000), (6000, 6000),
                                  (40000, 1500), (1500, 119000), (4000, 1500)])
def test_every_object_is_whole_in_a_window_at_the_working_scale_or_large_enough(p, size):
    width, height = size
    wins = windows(width, height, p)
    assert wins is not None
    assert wins[-1].level == max(w.level for w in wins) and wins[-1].inner == (False,) * 4  # top: whole image
    assert all(w.scale * max(w.width, w.height) <= 2 * p.max_side + 64 for w in wins)  # bounded network inputs
    assert all(w.scale * min(w.width, w.height) <= 1.25 * p.max_side + 32 for w in wins)
    working = wins[0].scale
    rng = np.random.default_rng(0)
    for _ in range(3000):
        side = float(np.exp(rng.uniform(np.log(12), np.log(min(width, height)))))
        aspect = rng.uniform(0.5, 5.0)
        bw, bh = min(width, side * max(1.0, aspect)), min(height, side * max(1.0, 1 / aspect))
        x0, y0 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        box = (x0, y0, x0 + bw, y0 + bh)
        long_side = max(bw, bh)
        # found at the working scale, or whole at a level where it measures >= the hand-off size
        w = _covering_window(box, wins, lambda w: w.level == 0 or long_side * w.scale >= p.tiling.handoff)
        assert w is not None, (box, size)
        assert w.level == 0 or long_side * working >= p.tiling.handoff * p.tiling.ratio


def test_cost_grows_with_pixels():
    """Network pixels per source pixel: a panorama costs at most 25 % more than the same pixels as 3:2 photos of the
    reference side (the overlap and the coarse levels); clp_det's floor searches large images 2x finer than such a
    photo (4x its network pixels) in tiles of at most 1280 x 800 source px that overlap by 168 px: 1.55x more."""
    def net_pixels(width, height, p):
        wins = windows(width, height, p) or [tiling.Window(0, 0, width, height, p.max_side / max(width, height), 0)]
        return sum(math.ceil(w.width * w.scale / 32) * 32 * math.ceil(w.height * w.scale / 32) * 32 for w in wins)

    for p in PASSES:
        side = p.tiling.reference_side
        working = tiling.working_scale(lambda w, h: MultiPassDetector().pass_scale(w, h, p), p.tiling)
        floor = (working / MultiPassDetector().pass_scale(side, side, p)) ** 2
        ordinary = floor * net_pixels(side, side * 2 // 3, p) / (side * (side * 2 // 3))
        for size in ((12000, 1500), (1500, 9000), (8000, 800), (3000, 1500), (40000, 1500), (1500, 119000)):
            cost = net_pixels(*size, p) / (size[0] * size[1])
            assert cost <= (1.55 if floor > 1 else 1.25) * ordinary, (size, p.max_side, cost / ordinary)


def test_spans_cover_and_overlap():
    for size, cap, overlap in ((12000, 3000.0, 260.0), (1000, 400.0, 50.0), (10, 20.0, 5.0), (5001, 1000.0, 300.0)):
        s = tiling.spans(size, cap, overlap)
        assert s[0][0] == 0 and s[-1][1] == size
        assert all(hi - lo <= cap + 1 for lo, hi in s)
        assert all(a[1] - b[0] >= overlap for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        tiling.Tiling(ratio=1.0)
    with pytest.raises(ValueError):
        tiling.Tiling(needs=-1.0)


def test_the_smallest_object_in_scope_sets_a_floor_under_the_working_scale():
    scale_of = lambda w, h: MultiPassDetector().pass_scale(w, h, CLPDET)  # noqa: E731
    assert tiling.working_scale(scale_of, tiling.Tiling(reference_side=1280)) == pytest.approx(1.0)
    assert tiling.working_scale(scale_of, tiling.Tiling(reference_side=1280, smallest=16, needs=8)) == 1.0  # coarser
    assert tiling.working_scale(scale_of, tiling.PLATES) == pytest.approx(2.0)  # a 16-px plate at 32 px
    assert windows(1280, 720, CLPDET) is None  # ordinary photos keep their one pass
    wins = windows(3000, 1500, CLPDET)  # the 2:1 canvas as published: 16-px plates at 2.0, larger ones coarser too
    assert [w.scale for w in wins if w.level == 0] == [2.0] * 9 and wins[-1].scale == pytest.approx(0.5)
    assert tiling.PLATES.to_dict()["needs"] == 32.0 and "needs" not in tiling.FACES.to_dict()
