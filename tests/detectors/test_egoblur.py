"""EgoBlur backend against small TorchScript stand-ins with the same call signatures as Meta's files."""
from __future__ import annotations

import hashlib
import json
import warnings
from typing import Dict, List, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from veilset.detectors import egoblur as eb  # noqa: E402
from veilset.detectors.base import FACE, LICENSE_PLATE  # noqa: E402
from veilset.detectors.registry import build_detector  # noqa: E402
from tests.detectors.torchless import import_and_build_without_torch  # noqa: E402

Tensor = torch.Tensor
# TorchScript is how Meta ships EgoBlur; torch >= 2.10 marks torch.jit.script/save/load as deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


class FakeGen1(torch.nn.Module):
    """``forward(image) -> (boxes, labels, scores, dims)`` like EgoBlur gen1.

    Returns the fixed boxes/scores it was built with, plus two boxes whose scores depend on the channel
    order: the top-left quarter scored by the mean of channel 0 (blue in BGR), the bottom-right quarter by the
    mean of channel 2 (red in BGR). Rejects anything but a 3 x H x W uint8 tensor."""

    def __init__(self, boxes: List[List[float]], scores: List[float]):
        super().__init__()
        self.register_buffer("fixed_boxes", torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        self.register_buffer("fixed_scores", torch.tensor(scores, dtype=torch.float32).reshape(-1))

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise RuntimeError("expected a 3 x H x W uint8 tensor")
        h = float(image.shape[1])
        w = float(image.shape[2])
        first = image[0].float().mean() / 255.0
        third = image[2].float().mean() / 255.0
        quarter_tl = torch.tensor([0.0, 0.0, w / 2, h / 2])
        quarter_br = torch.tensor([w / 2, h / 2, w, h])
        boxes = torch.cat([self.fixed_boxes, torch.stack([quarter_tl, quarter_br])], dim=0)
        scores = torch.cat([self.fixed_scores, torch.stack([first, third])], dim=0)
        labels = torch.ones(boxes.shape[0], dtype=torch.int64)
        dims = torch.tensor([h, w])
        return boxes, labels, scores, dims


class FakeGen2Trace(torch.nn.Module):
    """A traced-gen2-style 5-tuple ``(boxes, labels, _, scores, _)``: one face (class 0) and one plate (1)."""

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        boxes = torch.tensor([[10.0, 10.0, 20.0, 20.0], [30.0, 30.0, 50.0, 40.0]])
        labels = torch.tensor([0, 1])
        scores = torch.tensor([0.99, 0.98])
        return boxes, labels, torch.zeros(2), scores, torch.zeros(2)


def _script_class(cls):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(cls)


@_script_class
class FakeBoxes:
    def __init__(self, tensor: Tensor):
        self.tensor = tensor


@_script_class
class FakeInstances:
    def __init__(self, boxes: FakeBoxes, scores: Tensor, classes: Tensor):
        self._pred_boxes = boxes
        self._scores = scores
        self._pred_classes = classes


class FakeGen2Script(torch.nn.Module):
    """A scripted-detectron2-style gen2 model: ``inference([{"image": t}], do_postprocess=False)``."""

    def forward(self, image: Tensor) -> Tensor:
        return image

    @torch.jit.export
    def inference(self, batched_inputs: List[Dict[str, Tensor]], do_postprocess: bool = True) -> List[FakeInstances]:
        out: List[FakeInstances] = []
        for item in batched_inputs:
            image = item["image"]
            w = float(image.shape[2])
            boxes = torch.tensor([[0.0, 0.0, w / 4, 8.0], [1.0, 1.0, 9.0, 9.0]])
            out.append(FakeInstances(FakeBoxes(boxes), torch.tensor([0.95, 0.97]), torch.tensor([1, 0])))
        return out


def _save(module: torch.nn.Module, path) -> str:
    torch.jit.save(torch.jit.script(module), str(path))
    return str(path)


@pytest.fixture
def gen1_file(tmp_path):
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 20], [40, 40, 50, 50], [60, 0, 70, 10]]
    scores = [0.95, 0.94, 0.93, 0.9, 0.91]
    return _save(FakeGen1(boxes, scores), tmp_path / "ego_blur_face.jit")


def _boxes(dets):
    return [list(d.box_xyxy) for d in dets]


def test_gen1_defaults_threshold_nms_and_channel_order(gen1_file):
    det = eb.EgoBlurDetector(FACE, weights=gen1_file)
    assert (det.threshold, det.nms_iou, det.short_side, det.interface) == (0.9, 0.3, 0, "forward")
    image = np.zeros((80, 100, 3), dtype=np.uint8)
    image[..., 0] = 255  # pure red in RGB = channel 2 in BGR
    dets = det.detect(image)
    # [1,0,11,10] (IoU .82) and [0,0,10,20] (IoU .5) are suppressed by the 0.95 box at NMS IoU 0.3;
    # [40,40,50,50] scores exactly 0.9 -> dropped (strict >); red-driven bottom-right quarter scores 1.0;
    # blue-driven top-left quarter scores 0.
    assert _boxes(dets) == [[50.0, 40.0, 100.0, 80.0], [0.0, 0.0, 10.0, 10.0], [60.0, 0.0, 70.0, 10.0]]
    assert [round(d.score, 4) for d in dets] == [1.0, 0.95, 0.91]
    assert all(d.label == FACE and d.detector == "egoblur_face" for d in dets)
    blue = np.zeros((80, 100, 3), dtype=np.uint8)
    blue[..., 2] = 255
    assert [0.0, 0.0, 50.0, 40.0] in _boxes(det.detect(blue))
    assert [50.0, 40.0, 100.0, 80.0] not in _boxes(det.detect(blue))


def test_thresholds_and_nms_are_configurable(gen1_file):
    det = eb.EgoBlurDetector(FACE, weights=gen1_file, threshold="0.5", nms="0.6")
    dets = det.detect(np.zeros((80, 100, 3), dtype=np.uint8))
    # at IoU 0.6 the [0,0,10,20] box (IoU .5 with the best) survives; [1,0,11,10] (IoU .82) does not
    assert _boxes(dets) == [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 20.0], [60.0, 0.0, 70.0, 10.0],
                            [40.0, 40.0, 50.0, 50.0]]


def test_gen2_presets(gen1_file):
    face = eb.EgoBlurDetector(FACE, weights=gen1_file, gen="2")
    plate = eb.EgoBlurDetector(LICENSE_PLATE, weights=gen1_file, gen=2)
    assert (face.threshold, face.nms_iou, face.short_side, face.max_side) == (0.67416, 0.5, 1200, 1200)
    assert plate.threshold == 0.74475 and plate.name == "egoblur_plate"
    ident = plate.identity()
    assert ident["model"] == "EgoBlur gen2" and ident["threshold"] == 0.74475
    explicit = eb.EgoBlurDetector(FACE, weights=gen1_file, gen=2, threshold=0.3, short_side=0)
    assert (explicit.threshold, explicit.short_side) == (0.3, 0)


def test_resize_maps_boxes_back(tmp_path):
    path = _save(FakeGen1([[10, 20, 30, 40]], [0.99]), tmp_path / "m.jit")
    det = eb.EgoBlurDetector(LICENSE_PLATE, weights=path, short_side=100, max_side=0)
    image = np.zeros((50, 80, 3), dtype=np.uint8)  # -> 100 x 160 model input
    image[..., 0] = 255
    dets = det.detect(image)
    assert _boxes(dets) == [[40.0, 25.0, 80.0, 50.0], [5.0, 10.0, 15.0, 20.0]]
    assert all(d.label == LICENSE_PLATE for d in dets)


def test_resize_shortest_edge_matches_detectron2_rule():
    assert eb.resize_shortest_edge(600, 800, 1200, 1200) == (900, 1200)
    assert eb.resize_shortest_edge(1000, 500, 1200, 1200) == (1200, 600)
    assert eb.resize_shortest_edge(50, 80, 100, 0) == (100, 160)
    assert eb.resize_shortest_edge(50, 80, 0, 1200) == (50, 80)


def test_boxes_clipped_to_image(tmp_path):
    path = _save(FakeGen1([[-5, -5, 500, 20]], [0.99]), tmp_path / "m.jit")
    det = eb.EgoBlurDetector(FACE, weights=path)
    assert _boxes(det.detect(np.zeros((30, 40, 3), dtype=np.uint8)))[0] == [0.0, 0.0, 40.0, 20.0]


def test_five_tuple_output_filters_by_class(tmp_path):
    path = _save(FakeGen2Trace(), tmp_path / "trace.jit")
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    assert _boxes(eb.EgoBlurDetector(FACE, weights=path).detect(image)) == [[10.0, 10.0, 20.0, 20.0]]
    assert _boxes(eb.EgoBlurDetector(LICENSE_PLATE, weights=path).detect(image)) == [[30.0, 30.0, 50.0, 40.0]]


def test_scripted_gen2_inference_interface(tmp_path):
    path = _save(FakeGen2Script(), tmp_path / "ego_blur_face_gen2.jit")
    face = eb.EgoBlurDetector(FACE, weights=path, gen=2, short_side=0)
    assert face.interface == "script" and face.identity()["interface"] == "script"
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    assert _boxes(face.detect(image)) == [[1.0, 1.0, 9.0, 9.0]]
    plate = eb.EgoBlurDetector(LICENSE_PLATE, weights=path, gen=2, short_side=0)
    assert _boxes(plate.detect(image)) == [[0.0, 0.0, 10.0, 8.0]]


def test_bad_model_output_is_a_clear_error(tmp_path):
    class Wrong(torch.nn.Module):
        def forward(self, image: Tensor) -> Tensor:
            return image.float()

    path = _save(Wrong(), tmp_path / "wrong.jit")
    det = eb.EgoBlurDetector(FACE, weights=path)
    with pytest.raises(RuntimeError, match=r"expected the model to return \(boxes, labels, scores, dims\)"):
        det.detect(np.zeros((8, 8, 3), dtype=np.uint8))


def test_identity_records_weights_and_thresholds(gen1_file):
    det = eb.EgoBlurDetector(FACE, weights=gen1_file)
    ident = det.identity()
    assert ident["name"] == "egoblur_face" and ident["model"] == "EgoBlur gen1"
    assert ident["weights"] == "ego_blur_face.jit"
    assert ident["weights_sha256"] == hashlib.sha256(open(gen1_file, "rb").read()).hexdigest()
    assert (ident["threshold"], ident["nms"], ident["short_side"], ident["max_side"]) == (0.9, 0.3, 0, 0)
    assert (ident["label"], ident["interface"], ident["margin"], ident["preset"]) == (FACE, "forward", 0.0, "default")
    assert ident["runtime"].startswith("torch ")
    json.dumps(ident)


def test_device_selection(gen1_file):
    det = eb.EgoBlurDetector(FACE, weights=gen1_file, device="cpu")
    assert next(det._model.buffers()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            eb.EgoBlurDetector(FACE, weights=gen1_file, device="cuda")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="weights=PATH.jit is required"):
        eb.EgoBlurDetector(FACE)
    with pytest.raises(FileNotFoundError, match="nope.jit"):
        eb.EgoBlurDetector(FACE, weights=str(tmp_path / "nope.jit"))
    junk = tmp_path / "junk.jit"
    junk.write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="cannot load TorchScript file"):
        eb.EgoBlurDetector(LICENSE_PLATE, weights=str(junk))


@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": "high"}, "threshold must be a number, got 'high'"),
    ({"threshold": "1.2"}, "threshold must be in"),
    ({"nms": "2"}, "nms must be in"),
    ({"gen": "3"}, "gen must be an integer in \\[1, 2\\], got '3'"),
    ({"short_side": "-1"}, "short_side"),
    ({"max_side": "x"}, "max_side must be an integer, got 'x'"),
    ({"preset": "huge"}, "preset must be one of default, crowd; got 'huge'"),
    ({"margin": "-1"}, "margin must be in"),
    ({"device": "gpu"}, "device must be cpu, cuda or cuda:N, got 'gpu'"),
])
def test_options_are_validated(gen1_file, kwargs, match):
    with pytest.raises(ValueError, match=match):
        eb.EgoBlurDetector(FACE, weights=gen1_file, **kwargs)


def test_registry_names(gen1_file):
    face = build_detector(f"egoblur_face:weights={gen1_file},threshold=0.5")
    plate = build_detector(f"egoblur_plate:weights={gen1_file},gen=2")
    assert (face.name, face.label, face.threshold) == ("egoblur_face", FACE, 0.5)
    assert (plate.name, plate.label, plate.threshold) == ("egoblur_plate", LICENSE_PLATE, 0.74475)


def test_detect_batch_and_input_check(gen1_file):
    det = eb.EgoBlurDetector(FACE, weights=gen1_file)
    images = [np.zeros((80, 100, 3), dtype=np.uint8), np.full((30, 30, 3), 255, dtype=np.uint8)]
    assert det.detect_batch(images) == [det.detect(images[0]), det.detect(images[1])]
    with pytest.raises(ValueError, match="uint8 RGB"):
        det.detect_batch([np.zeros((4, 4, 3), dtype=np.float32)])


def test_import_is_cheap_and_missing_torch_gives_install_hint(tmp_path):
    model = tmp_path / "ego_blur_face.jit"
    model.write_bytes(b"x")
    out = import_and_build_without_torch("veilset.detectors.egoblur", f"m.egoblur_face(weights={str(model)!r})")
    assert "pip install 'veilset[egoblur]'" in out


def test_margin_min_size_and_crowd_preset(tmp_path):
    path = _save(FakeGen1([[40, 40, 60, 50]], [0.99]), tmp_path / "m.jit")
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    plain = eb.EgoBlurDetector(FACE, weights=path)
    assert _boxes(plain.detect(image)) == [[40.0, 40.0, 60.0, 50.0]]
    grown = eb.EgoBlurDetector(FACE, weights=path, margin="0.5")  # +10 px in x, +5 px in y per side
    assert _boxes(grown.detect(image)) == [[30.0, 35.0, 70.0, 55.0]]
    assert eb.EgoBlurDetector(FACE, weights=path, min_size="11").detect(image) == []
    crowd = eb.EgoBlurDetector(FACE, weights=path, preset="crowd")
    assert crowd.identity()["passes"] == [{"grid": 1, "max_side": None, "scale": 1.0, "max_upscale": 1.0},
                                          {"grid": 2, "max_side": None, "scale": 1.0, "max_upscale": 1.0}]
    boxes = _boxes(crowd.detect(image))
    # the fixed box is found by the whole image and (at each tile's offset) by the 4 tiles
    assert [40.0, 40.0, 60.0, 50.0] in boxes and len(boxes) > 1


def test_runs_through_the_beam_model_handler(gen1_file):
    pytest.importorskip("apache_beam")
    from veilset.detectors.handler import DetectorModelHandler

    handler = DetectorModelHandler(f"egoblur_face:weights={gen1_file}", max_batch_size=2)
    model = handler.load_model()
    images = [np.zeros((80, 100, 3), dtype=np.uint8), np.zeros((40, 40, 3), dtype=np.uint8)]
    results = list(handler.run_inference(images, model))
    assert [r.inference for r in results] == model.detect_batch(images)
    assert _boxes(results[0].inference)[0] == [0.0, 0.0, 10.0, 10.0]


def test_unknown_spec_option_is_a_value_error(gen1_file):
    with pytest.raises(ValueError, match="unknown option\\(s\\) face_threshold; accepted: weights, gen, threshold"):
        build_detector(f"egoblur_face:weights={gen1_file},face_threshold=0.5")
    with pytest.raises(ValueError, match="unknown option\\(s\\) label"):
        build_detector(f"egoblur_plate:weights={gen1_file},label=face")
