"""Our generator returns exactly the stock SamAutomaticMaskGenerator's output (same model, same settings)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import cv2  # noqa: E402
import skimage.data  # noqa: E402
from segment_anything import SamAutomaticMaskGenerator  # noqa: E402
from segment_anything.utils.amg import generate_crop_boxes  # noqa: E402

from veilset.segmentation.amg import (FastSamAutomaticMaskGenerator, _mask_box_xyxy,  # noqa: E402
                                      _remove_small_regions_window)
from veilset.segmentation.rle import decode_rle  # noqa: E402
from veilset.segmentation.sam import random_sam  # noqa: E402

# Thresholds lowered (and NMS loosened) so that a randomly initialised model leaves tens of masks to compare.
CROPS = dict(points_per_side=12, crop_n_layers=1, crop_n_points_downscale_factor=2, min_mask_region_area=50,
             pred_iou_thresh=0.5, stability_score_thresh=0.6, box_nms_thresh=0.9, crop_nms_thresh=0.9)
NO_CROPS = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.7, box_nms_thresh=0.9)


@pytest.fixture(scope="module")
def model():
    return random_sam("vit_tiny", seed=0, img_size=256)


@pytest.fixture(scope="module")
def image():
    return cv2.resize(skimage.data.astronaut(), (240, 160), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def crops_outputs(model, image):
    stock = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **CROPS).generate(image)
    ours = FastSamAutomaticMaskGenerator(model, **CROPS).generate(image)
    return stock, ours


def test_identical_to_stock_with_crops_and_small_region_cleanup(crops_outputs):
    stock, ours = crops_outputs
    assert len(stock) >= 20
    assert len(ours) == len(stock)
    for a, b in zip(stock, ours):
        # every field, in order: RLE string, area, XYWH box, scores, prompt point, crop box
        assert a == b


def test_identical_to_stock_without_crops(model, image):
    stock = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **NO_CROPS).generate(image)
    ours = FastSamAutomaticMaskGenerator(model, **NO_CROPS).generate(image)
    assert len(stock) >= 5 and ours == stock


def test_crop_box_geometry(crops_outputs, image):
    _, ours = crops_outputs
    h, w = image.shape[:2]
    boxes, _ = generate_crop_boxes((h, w), CROPS["crop_n_layers"], 512 / 1500)
    allowed = {(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes}
    assert {tuple(a["crop_box"]) for a in ours} <= allowed
    assert len({tuple(a["crop_box"]) for a in ours}) > 1  # masks from crops survived
    for ann in ours:
        cx, cy, cw, ch = ann["crop_box"]
        (px, py), = ann["point_coords"]
        assert cx <= px <= cx + cw and cy <= py <= cy + ch
        mask = decode_rle(ann["segmentation"])
        assert mask.shape == (h, w) and int(mask.sum()) == ann["area"]
        if ann["area"]:
            ys, xs = np.nonzero(mask)
            # SAM's bbox convention: XYWH with W = max_x - min_x (inclusive max), as SamAutomaticMaskGenerator
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min(), ys.max() - ys.min()]


def test_deterministic(model, image, crops_outputs):
    _, ours = crops_outputs
    assert FastSamAutomaticMaskGenerator(model, **CROPS).generate(image.copy()) == ours


@pytest.mark.parametrize("settings", [NO_CROPS, CROPS], ids=["no_crops", "crops"])
def test_empty_and_tiny_images(model, settings):
    # with crop layers, generate_crop_boxes gives empty windows for such images (the stock generator raises)
    gen = FastSamAutomaticMaskGenerator(model, **settings)
    assert gen.generate(np.zeros((0, 0, 3), np.uint8)) == []
    for shape in [(1, 1, 3), (2, 2, 3), (1, 40, 3)]:
        out = gen.generate(np.full(shape, 128, np.uint8))
        assert isinstance(out, list)
        assert all(a["segmentation"]["size"] == list(shape[:2]) for a in out)


def test_mask_box_matches_library():
    from segment_anything.utils.amg import batched_mask_to_box

    g = torch.Generator().manual_seed(0)
    masks = torch.rand((20, 13, 17), generator=g) > 0.97
    masks[3] = False
    assert torch.equal(_mask_box_xyxy(masks), batched_mask_to_box(masks))


def test_window_small_region_removal_matches_full_image():
    from segment_anything.utils.amg import remove_small_regions

    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(60):
        H, W = 40, 50
        full = np.zeros((H, W), bool)
        y0, x0 = int(rng.integers(0, 20)), int(rng.integers(0, 25))
        h, w = int(rng.integers(3, H - y0 + 1)), int(rng.integers(3, W - x0 + 1))
        full[y0:y0 + h, x0:x0 + w] = rng.random((h, w)) < 0.7
        ys, xs = np.nonzero(full)
        if not len(ys):
            continue
        by0, by1, bx0, bx1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        top, left, bottom, right = int(by0 > 0), int(bx0 > 0), int(by1 < H), int(bx1 < W)
        win = np.pad(full[by0:by1, bx0:bx1], ((top, bottom), (left, right)))
        py0, px0 = by0 - top, bx0 - left
        ph, pw = win.shape
        outside = {k: v for k, v, present in [("top", py0 * W, top), ("bottom", (H - py0 - ph) * W, bottom),
                                              ("left", ph * px0, left), ("right", ph * (W - px0 - pw), right)]
                   if present}
        for area in (3, 10, 40):
            got, changed, exact = _remove_small_regions_window(win, area, "holes", outside)
            want, want_changed = remove_small_regions(full, area, "holes")
            if not exact:
                continue
            out = np.zeros((H, W), bool)
            out[py0:py0 + ph, px0:px0 + pw] = got
            assert changed == want_changed and np.array_equal(out, want)
            checked += 1
    assert checked > 100


def test_shared_image_decoder_is_bit_identical(model, image):
    from segment_anything import SamPredictor

    from veilset.segmentation.amg import decode_shared_image

    predictor = SamPredictor(model)
    predictor.set_image(image)
    rng = np.random.default_rng(0)
    points = torch.as_tensor(predictor.transform.apply_coords(rng.random((16, 2)) * [240, 160], (160, 240)))
    labels = torch.ones(16, dtype=torch.int)
    with torch.no_grad():
        sparse, dense = model.prompt_encoder(points=(points[:, None], labels[:, None]), boxes=None, masks=None)
        pe = model.prompt_encoder.get_dense_pe()
        want = model.mask_decoder(image_embeddings=predictor.features, image_pe=pe, sparse_prompt_embeddings=sparse,
                                  dense_prompt_embeddings=dense, multimask_output=True)
        got = decode_shared_image(model.mask_decoder, predictor.features, pe, sparse, dense)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_window_stats_equal_full_crop_stats(model):
    """Stability and boxes computed inside the support windows equal the library's over the whole crop."""
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score

    from veilset.segmentation.amg import _window_stats

    gen = FastSamAutomaticMaskGenerator(model, **NO_CROPS)
    g = torch.Generator().manual_seed(3)
    low = torch.full((12, 64, 64), -8.0)
    for j in range(12):  # blobs of varying size and sharpness at random places, one mask left empty
        if j == 5:
            continue
        y, x = (int(v) for v in torch.randint(0, 64, (2,), generator=g))
        r = int(torch.randint(1, 12, (1,), generator=g))
        yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
        low[j] = 6.0 - ((yy - y) ** 2 + (xx - x) ** 2).float().sqrt() * (j + 1) / r
    for input_size, original_size in [((256, 171), (300, 200)), ((171, 256), (120, 180)), ((256, 256), (33, 33))]:
        up = model.postprocess_masks(low[:, None], input_size, original_size)[:, 0]
        windows = gen._windows(low, input_size, original_size)
        assert windows[5] is None and any(w is not None for w in windows)
        stab, boxes = _window_stats(up, windows, model.mask_threshold, 1.0)
        want = calculate_stability_score(up, model.mask_threshold, 1.0)
        assert torch.equal(torch.isnan(stab), torch.isnan(want))
        assert torch.equal(stab[~torch.isnan(stab)], want[~torch.isnan(want)])
        assert torch.equal(boxes, batched_mask_to_box(up > model.mask_threshold))


# ------------------------------------------------------------------------------------------ named steps
def test_the_shared_first_block_equals_the_block_on_copies(model):
    """two_way_block(shared=True) on one image embedding = the library's block on B copies, bit for bit."""
    from veilset.segmentation.amg import two_way_block

    layer = model.mask_decoder.transformer.layers[0]
    g = torch.Generator().manual_seed(0)
    queries = torch.randn(5, 7, 64, generator=g)
    keys1, pe1 = torch.randn(1, 256, 64, generator=g), torch.randn(1, 256, 64, generator=g)
    with torch.no_grad():
        shared = two_way_block(layer, queries, keys1, queries, pe1, shared=True)
        copies = layer(queries, keys1.expand(5, -1, -1), queries, pe1)
        plain = two_way_block(layer, queries, keys1.expand(5, -1, -1), queries, pe1, shared=False)
    assert all(torch.equal(a, b) for a, b in zip(shared, copies)) and all(torch.equal(a, b)
                                                                       for a, b in zip(plain, copies))


def test_prefilter_keeps_what_can_pass_and_records_are_the_stock_dicts(model):
    from veilset.segmentation.amg import FastSamAutomaticMaskGenerator, mask_records

    gen = FastSamAutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.5)
    low = torch.full((4, 8, 8), -20.0)
    low[1, 2, 2] = 5.0
    low[2, 3, 3] = 5.0
    iou = torch.tensor([0.9, 0.9, 0.4, 0.9])
    assert gen._prefilter(low, iou).tolist() == [1]  # 0, 3: provably empty; 2: low predicted IoU
    window = np.zeros((3, 4), bool)
    window[1:, 1:3] = True
    [rec] = mask_records([(5, 6, window)], [0], np.array([[7, 6, 8, 7]]), torch.tensor([0.75]),
                         torch.tensor([0.5]), torch.tensor([[1.0, 2.0]], dtype=torch.float64),
                         torch.tensor([[0, 0, 20, 10]]), (10, 20))
    assert (rec["area"], rec["bbox"], rec["crop_box"], rec["point_coords"]) == (4, [7, 6, 1, 1], [0, 0, 20, 10],
                                                                                [[1.0, 2.0]])
    assert rec["segmentation"]["size"] == [10, 20] and rec["predicted_iou"] == 0.75
