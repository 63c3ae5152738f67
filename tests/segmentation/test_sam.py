"""The sam backend through the registry: checkpoint loading as a user does it, presets, options, records."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

import cv2  # noqa: E402
import skimage.data  # noqa: E402

from veilset.segmentation.base import MaskAnnotation  # noqa: E402
from veilset.segmentation.handler import MaskGeneratorModelHandler  # noqa: E402
from veilset.segmentation.registry import build_mask_generator  # noqa: E402
from veilset.segmentation.rle import decode_rle  # noqa: E402
from veilset.segmentation.sam import PRESETS, SamMaskGenerator, file_sha256, random_sam  # noqa: E402

LOW = "img_size=256,points_per_side=8,pred_iou_thresh=0.5,stability_score_thresh=0.6,box_nms_thresh=0.9"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_tiny_random.pth"
    torch.save(random_sam("vit_tiny", seed=0, img_size=256).state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def image():
    return cv2.resize(skimage.data.astronaut(), (240, 160), interpolation=cv2.INTER_AREA)


def test_checkpoint_loads_through_spec_and_matches_in_memory_model(checkpoint, image):
    gen = build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=default,device=cpu,{LOW}")
    assert isinstance(gen, SamMaskGenerator) and gen.device == "cpu"
    masks = gen.generate(image)
    assert len(masks) >= 5
    ref = SamMaskGenerator("vit_tiny", checkpoint, preset="default", device="cpu", img_size=256,
                           points_per_side=8, pred_iou_thresh=0.5, stability_score_thresh=0.6, box_nms_thresh=0.9,
                           model=random_sam("vit_tiny", seed=0, img_size=256))
    assert ref.generate(image) == masks
    ident = gen.identity()
    assert ident["checkpoint_sha256"] == file_sha256(checkpoint) and ident["model_type"] == "vit_tiny"
    assert ident["settings"]["points_per_side"] == 8 and ident["impl"] == "fast"
    assert json.loads(json.dumps(ident)) == ident
    for ann in masks:
        assert isinstance(ann, MaskAnnotation)
        assert isinstance(ann.area, int) and isinstance(ann.predicted_iou, float)
        assert ann.crop_box_xywh == (0.0, 0.0, 240.0, 160.0)
        assert decode_rle(ann.segmentation).sum() == ann.area
        assert MaskAnnotation.from_sa1b(ann.to_sa1b(1)) == ann


def test_stock_impl_gives_the_same_annotations(checkpoint, image):
    fast = build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=default,{LOW}")
    stock = build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=default,impl=stock,{LOW}")
    assert stock.generate(image) == fast.generate(image)


def test_handler_loads_sam_once_and_runs(checkpoint, image):
    handler = MaskGeneratorModelHandler(f"sam:vit_tiny:{checkpoint}:preset=default,{LOW}", device="cpu")
    model = handler.load_model()
    (res,) = handler.run_inference([image], model)
    assert res.inference == model.generate(image)


def test_max_coverage_filter(checkpoint, image):
    everything = build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=default,{LOW}").generate(image)
    cover = sorted(m.area for m in everything)[len(everything) // 2] / (160 * 240)  # the median mask's coverage
    limited = build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=default,max_mask_coverage={cover!r},{LOW}")
    kept = limited.generate(image)
    assert kept == [m for m in everything if m.area < cover * 160 * 240]
    assert 0 < len(kept) < len(everything)


def test_presets():
    sa1b, default = PRESETS["sa1b"], PRESETS["default"]
    assert (sa1b.points_per_side, sa1b.crop_n_layers, sa1b.crop_n_points_downscale_factor) == (32, 2, 2)
    assert (sa1b.pred_iou_thresh, sa1b.stability_score_thresh, sa1b.box_nms_thresh, sa1b.crop_nms_thresh) == \
        (0.88, 0.95, 0.7, 0.7)
    assert (sa1b.min_mask_region_area, sa1b.max_mask_coverage) == (100, 0.95)
    from segment_anything.utils.amg import build_all_layer_point_grids

    grids = build_all_layer_point_grids(32, 2, 2)
    assert [len(g) for g in grids] == [32 * 32, 16 * 16, 8 * 8]
    import inspect

    from segment_anything import SamAutomaticMaskGenerator

    params = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    for key, value in default.library_kwargs().items():
        assert params[key].default == value, key


def test_errors_are_clear(checkpoint, tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloaded|not found"):
        build_mask_generator(f"sam:vit_b:{tmp_path / 'missing.pth'}")
    with pytest.raises(ValueError, match="vit_q.*vit_h"):
        build_mask_generator(f"sam:vit_q:{checkpoint}")
    with pytest.raises(ValueError, match="MODEL_TYPE:CHECKPOINT"):
        build_mask_generator("sam:vit_b")
    with pytest.raises(ValueError, match="preset 'nope'"):
        build_mask_generator(f"sam:vit_tiny:{checkpoint}:preset=nope,img_size=256")
    with pytest.raises(ValueError, match="points_per_sid"):
        build_mask_generator(f"sam:vit_tiny:{checkpoint}:points_per_sid=3")
    with pytest.raises(ValueError, match="'x'"):
        build_mask_generator(f"sam:vit_tiny:{checkpoint}:points_per_side=x")
    with pytest.raises(ValueError, match="GPU-only"):
        build_mask_generator(f"sam:vit_tiny:{checkpoint}:device=cpu,bf16=true,img_size=256")
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        build_mask_generator(f"sam:vit_tiny:{checkpoint}:pred_iou_thresh=1.5,img_size=256")


def test_sam2_without_package_gives_install_hint():
    try:
        import sam2  # noqa: F401
        pytest.skip("sam2 is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match="pip install"):
        build_mask_generator("sam2:configs/sam2.1/sam2.1_hiera_t.yaml:/nonexistent.pt")
