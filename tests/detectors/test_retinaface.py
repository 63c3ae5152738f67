"""RetinaFace backend: weights loading through the user's code path, decoding, box mapping, options.

No real weights are needed: a randomly initialised network is saved to a temp file and loaded back with
``weights=PATH``; decoding is checked on hand-made head outputs.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("retinaface.network")

from veilset.detectors import ops  # noqa: E402
from veilset.detectors import retinaface as rf  # noqa: E402
from veilset.detectors.base import FACE  # noqa: E402
from veilset.detectors.registry import build_detector  # noqa: E402
from tests.detectors.torchless import import_and_build_without_torch  # noqa: E402


@pytest.fixture(scope="module")
def random_net():
    torch.manual_seed(0)
    return rf.build_network()


@pytest.fixture(scope="module")
def weights_file(random_net, tmp_path_factory):
    """A DataParallel-style checkpoint (``module.`` prefix), as biubug6's training writes them."""
    path = tmp_path_factory.mktemp("w") / "retinaface_random.pth"
    torch.save({"module." + k: v for k, v in random_net.state_dict().items()}, path)
    return str(path)


@pytest.fixture(scope="module")
def detector(weights_file):
    return rf.RetinaFaceDetector(weights=weights_file, threshold="0.5", max_side="128")


# ------------------------------------------------------------------------------------------ loading

def test_loads_random_weights_through_user_path(detector, random_net):
    loaded = detector._model.state_dict()
    for key, value in random_net.state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_identity_records_weights_and_thresholds(detector, weights_file):
    ident = detector.identity()
    assert ident["name"] == "retinaface"
    assert ident["package"] == "retinaface-pytorch" and ident["package_version"] == "0.0.8"
    assert ident["weights"] == "retinaface_random.pth"
    assert ident["weights_sha256"] == hashlib.sha256(open(weights_file, "rb").read()).hexdigest()
    assert (ident["threshold"], ident["nms"], ident["margin"], ident["preset"]) == (0.5, 0.4, 0.0, "default")
    assert ident["passes"] == [{"grid": 1, "max_side": 128, "scale": 1.0, "max_upscale": 1.0,
                                "tiling": {"reference_side": 1500, "ratio": 4.0, "handoff": 40.0, "edge": 8.0,
                                           "ordinary_side": 1500}}]
    assert ident["network"] == "resnet50" and ident["normalize"] == "imagenet" and ident["batch_size"] == 1
    assert ident["label"] == FACE and ident["runtime"].startswith("torch ")
    json.dumps(ident)


def test_loads_release_zip_and_lightning_checkpoint(random_net, weights_file, tmp_path):
    # the package's release format: a zip around one torch file; keys without prefix
    plain = tmp_path / "plain.pth"
    torch.save(random_net.state_dict(), plain)
    archive = tmp_path / rf.WEIGHTS_FILE
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        zf.write(plain, "retinaface_resnet50_2020-07-20.pth")
    state = rf.load_state_dict(str(archive))
    assert set(state) == set(random_net.state_dict())
    # a Lightning checkpoint: {"state_dict": {"model.<key>": ...}}
    ckpt = tmp_path / "epoch=1.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in random_net.state_dict().items()}, "epoch": 1}, ckpt)
    state = rf.load_state_dict(str(ckpt))
    assert set(state) == set(random_net.state_dict())
    key = "ClassHead.0.conv1x1.weight"
    assert torch.equal(state[key], random_net.state_dict()[key])


def test_weights_from_torch_hub_cache(random_net, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    target = rf.hub_weights_path()
    assert target == str(tmp_path / "hub" / "checkpoints" / rf.WEIGHTS_FILE)
    os.makedirs(os.path.dirname(target))
    torch.save(random_net.state_dict(), target)  # a plain torch file under the release name also loads
    det = rf.RetinaFaceDetector()
    assert det.weights_path == target
    assert det.identity()["weights"] == rf.WEIGHTS_FILE


def test_missing_weights_error_names_file_url_and_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def no_download(*args, **kwargs):  # pragma: no cover - must never be reached
        raise AssertionError("downloaded without download=true")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(FileNotFoundError) as err:
        rf.RetinaFaceDetector()
    msg = str(err.value)
    assert rf.WEIGHTS_FILE in msg and rf.WEIGHTS_URL in msg
    assert str(tmp_path / "hub" / "checkpoints" / rf.WEIGHTS_FILE) in msg
    with pytest.raises(FileNotFoundError, match="does-not-exist.pth"):
        rf.RetinaFaceDetector(weights=str(tmp_path / "does-not-exist.pth"))


def test_absent_weights_are_found_absent_without_importing_torch(tmp_path):
    """The audit asks for RetinaFace on every run and falls back to CenterFace: that answer must not cost a torch
    import (~3 CPU-s in the main process). The path looked at is the one torch.hub would use."""
    import subprocess
    import sys

    code = ("import sys\nfrom veilset.detectors import retinaface as rf\n"
            "try:\n    rf.RetinaFaceDetector()\nexcept FileNotFoundError:\n    pass\n"
            "print('torch' in sys.modules, rf.hub_weights_path())\n"
            "import torch\nprint(rf.hub_weights_path() == torch.hub.get_dir() + '/checkpoints/' + rf.WEIGHTS_FILE)")
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}):
        run_env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
        done = subprocess.run([sys.executable, "-c", code], env={**run_env, **env}, capture_output=True, text=True,
                              check=True)
        imported, path = done.stdout.splitlines()[0].split(" ", 1)
        assert imported == "False" and path.startswith(str(tmp_path))
        assert done.stdout.splitlines()[1] == "True"


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def offline(url, dst, **kwargs):
        calls.append(url)
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FileNotFoundError, match="download failed.*unreachable"):
        rf.RetinaFaceDetector(download="true")
    assert calls == [rf.WEIGHTS_URL]


def test_download_only_when_allowed_goes_to_hub_cache(random_net, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    calls = []

    def fake_download(url, dst, **kwargs):  # stands in for the network: writes the file torch hub would
        calls.append((url, dst))
        torch.save(random_net.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    det = rf.RetinaFaceDetector(download="yes")
    target = str(tmp_path / "hub" / "checkpoints" / rf.WEIGHTS_FILE)
    assert calls == [(rf.WEIGHTS_URL, target)] and det.weights_path == target
    rf.RetinaFaceDetector()  # now cached: found offline, no second download
    assert len(calls) == 1


def test_weights_that_do_not_fit_are_rejected(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="does not fit RetinaFace"):
        rf.RetinaFaceDetector(weights=str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read weights"):
        rf.RetinaFaceDetector(weights=str(junk))


# ------------------------------------------------------------------------------------------ options

@pytest.mark.parametrize("kwargs, match", [
    ({"threshold": "abc"}, "threshold must be a number, got 'abc'"),
    ({"threshold": "1.5"}, r"threshold must be in \[0.0, 1.0\], got '1.5'"),
    ({"nms": "-0.1"}, "nms must be in"),
    ({"max_side": "10"}, "max_side must be 0 .* got '10'"),
    ({"max_side": "big"}, "max_side must be an integer, got 'big'"),
    ({"preset": "fast"}, "preset must be one of default, native, crowd, upscale; got 'fast'"),
    ({"margin": "2"}, "margin must be in"),
    ({"batch_size": "0"}, "batch_size"),
    ({"threads": "-1"}, "threads"),
    ({"network": "mobilenet0.25"}, "network must be one of resnet50; got 'mobilenet0.25'"),
    ({"device": "tpu"}, "device must be cpu, cuda or cuda:N, got 'tpu'"),
    ({"normalize": "rgb"}, "normalize must be one of imagenet, bgr_mean"),
    ({"download": "maybe"}, "download must be true/false, got 'maybe'"),
    ({"weights": " "}, "weights must be a file path"),
])
def test_options_are_validated_before_loading(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rf.RetinaFaceDetector(**kwargs)


def test_registry_builds_from_spec(weights_file):
    det = build_detector(f"retinaface:weights={weights_file},threshold=0.7,max_side=0,batch_size=2,preset=crowd")
    assert isinstance(det, rf.RetinaFaceDetector)
    assert (det.threshold, det.batch_size, det.label) == (0.7, 2, FACE)
    assert det.passes == (rf.Pass(1, None), rf.Pass(2, None))


# ------------------------------------------------------------------------------------------ decoding

def test_decode_known_prior():
    """One prior at the centre of a 64 x 64 input, 16 px wide: shift it by +1 (x0.1 variance) of its width
    in x and double its width (log 2 / 0.2); the background-scored prior is dropped."""
    priors = torch.tensor([[0.5, 0.5, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]])
    loc = torch.tensor([[1.0, 0.0, math.log(2.0) / 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]])
    conf = torch.tensor([[0.0, 10.0], [10.0, 0.0]])
    boxes, scores = rf.decode_detections(loc, conf, priors, (64, 64), threshold=0.5, nms_iou=0.4)
    cx, w, h = (0.5 + 1.0 * 0.1 * 0.25) * 64, 0.5 * 64, 0.25 * 64
    np.testing.assert_allclose(boxes, [[cx - w / 2, 32 - h / 2, cx + w / 2, 32 + h / 2]], atol=1e-4)
    np.testing.assert_allclose(scores, [1 / (1 + math.exp(-10))], rtol=1e-6)


def test_decode_uses_input_height_and_width_separately():
    priors = torch.tensor([[0.5, 0.5, 0.25, 0.5]])  # normalised to a 40 (h) x 80 (w) input
    loc = torch.zeros(1, 4)
    conf = torch.tensor([[0.0, 5.0]])
    boxes, _ = rf.decode_detections(loc, conf, priors, (40, 80), threshold=0.5, nms_iou=0.4)
    np.testing.assert_allclose(boxes, [[30.0, 10.0, 50.0, 30.0]], atol=1e-5)


def test_decode_threshold_and_nms():
    priors = torch.tensor([[0.5, 0.5, 0.25, 0.25]] * 3 + [[0.1, 0.1, 0.1, 0.1]])
    loc = torch.zeros(4, 4)
    loc[1, 0] = 0.1  # a near-duplicate of prior 0, lower score -> suppressed
    conf = torch.tensor([[0.0, 4.0], [0.0, 3.0], [0.0, -3.0], [0.0, 2.0]])
    boxes, scores = rf.decode_detections(loc, conf, priors, (100, 100), threshold=0.5, nms_iou=0.4)
    assert len(boxes) == 2
    np.testing.assert_allclose(scores, torch.softmax(conf[[0, 3]], -1)[:, 1].numpy(), rtol=1e-6)
    np.testing.assert_allclose(boxes[1], [5.0, 5.0, 15.0, 15.0], atol=1e-5)
    empty_boxes, empty_scores = rf.decode_detections(loc, conf, priors, (100, 100), threshold=0.999,
                                                     nms_iou=0.4)
    assert empty_boxes.shape == (0, 4) and empty_scores.shape == (0,)


def test_priors_match_network_anchor_count(detector):
    batch = torch.zeros(1, 3, 96, 160)
    with torch.inference_mode():
        loc, conf, landmarks = detector._model(batch)
    priors = rf.priors_for(96, 160)
    assert loc.shape == (1, priors.shape[0], 4)
    assert conf.shape == (1, priors.shape[0], 2) and landmarks.shape == (1, priors.shape[0], 10)
    # 2 anchors per cell at strides 8, 16, 32
    assert priors.shape[0] == 2 * (12 * 20 + 6 * 10 + 3 * 5)


def test_random_model_detect_batch_shapes(detector):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (70, 90, 3), dtype=np.uint8), rng.integers(0, 255, (200, 150, 3), dtype=np.uint8)]
    results = detector.detect_batch(images)
    assert len(results) == 2
    for image, dets in zip(images, results):
        h, w = image.shape[:2]
        for d in dets:
            x0, y0, x1, y1 = d.box_xyxy
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert d.label == FACE and d.detector == "retinaface" and 0.5 < d.score <= 1.0
        assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    assert detector.detect_batch([]) == []
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((10, 10), dtype=np.uint8))


# ------------------------------------------------------------------------------- resize & box mapping

def test_pass_size_caps_long_side_and_scales():
    assert rf.pass_size(100, 200, rf.Pass(1, 960)) == (100, 200)  # never upscaled by the cap
    assert rf.pass_size(1000, 1500, rf.Pass(1, 960)) == (640, 960)
    assert rf.pass_size(1500, 1000, rf.Pass(1, None)) == (1500, 1000)
    assert rf.pass_size(999, 3, rf.Pass(1, 333)) == (333, 1)
    assert rf.pass_size(100, 150, rf.Pass(1, 2560, 2.0)) == (200, 300)
    assert rf.padded(33, 64) == (64, 64)


def test_map_boxes_to_source_is_exact_and_clipped():
    boxes = np.array([[10.0, 20.0, 30.0, 40.0], [-5.0, -5.0, 70.0, 50.0]])
    out = ops.map_boxes_to_source(boxes, (48, 64), (150, 200))  # x ratio 200/64, y ratio 150/48
    np.testing.assert_allclose(out[0], [10 * 200 / 64, 20 * 150 / 48, 30 * 200 / 64, 40 * 150 / 48])
    np.testing.assert_allclose(out[1], [0.0, 0.0, 200.0, 150.0])


class _OnePriorNet(torch.nn.Module):
    """Fires on exactly one prior -- the 16-px anchor of the stride-8 cell in row 2, column 3, i.e. the box
    (20, 12, 36, 28) in network-input pixels -- with zero regression. Records the input shapes it saw."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(tuple(x.shape))
        n, _, h, w = x.shape
        p = rf.priors_for(h, w).shape[0]
        index = (2 * (w // 8) + 3) * 2  # w // 8 cells per stride-8 row, 2 anchors per cell
        conf = torch.zeros(n, p, 2)
        conf[:, :, 0] = 10.0
        conf[:, index, :] = torch.tensor([0.0, 10.0])
        return torch.zeros(n, p, 4), conf, torch.zeros(n, p, 10)


def test_detect_maps_boxes_back_through_max_size(detector, monkeypatch):
    fake = _OnePriorNet()
    monkeypatch.setattr(detector, "_model", fake)
    monkeypatch.setattr(detector, "batch_size", 4)
    big = np.zeros((256, 512, 3), dtype=np.uint8)  # max_size 128 -> 64 x 128 network input
    small = np.zeros((40, 50, 3), dtype=np.uint8)  # not resized; padded to 64 x 64
    wide = np.zeros((64, 100, 3), dtype=np.uint8)  # not resized; padded to 64 x 128 -> batched with `big`
    out_big, out_small, out_wide = detector.detect_batch([big, small, wide])
    assert fake.seen == [(2, 3, 64, 128), (1, 3, 64, 64)]
    net_box = np.array([20.0, 12.0, 36.0, 28.0])
    np.testing.assert_allclose(rf.priors_for(64, 128)[(2 * 16 + 3) * 2].numpy(),
                               [28 / 128, 20 / 64, 16 / 128, 16 / 64], rtol=1e-6)
    assert len(out_big) == len(out_small) == len(out_wide) == 1
    np.testing.assert_allclose(out_big[0].box_xyxy, net_box * 4.0, atol=0.01)  # 512 / 128 = 256 / 64 = 4
    np.testing.assert_allclose(out_small[0].box_xyxy, net_box, atol=0.01)
    np.testing.assert_allclose(out_wide[0].box_xyxy, net_box, atol=0.01)


def test_results_do_not_depend_on_batch_neighbours(detector, monkeypatch):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 255, (70, 90, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (100, 40, 3), dtype=np.uint8)
    alone = detector.detect_batch([a])
    monkeypatch.setattr(detector, "batch_size", 8)
    assert detector.detect_batch([b, a])[1] == alone[0]
    assert alone[0] == detector.detect(a)


def test_single_image_path_margin_and_min_size(detector, monkeypatch):
    monkeypatch.setattr(detector, "_model", _OnePriorNet())
    image = np.zeros((64, 128, 3), dtype=np.uint8)
    plain = detector.detect(image)
    np.testing.assert_allclose(plain[0].box_xyxy, [20, 12, 36, 28], atol=0.01)
    monkeypatch.setattr(detector, "margin", 0.25)  # 16-px box grows by 4 px per side
    np.testing.assert_allclose(detector.detect(image)[0].box_xyxy, [16, 8, 40, 32], atol=0.01)
    monkeypatch.setattr(detector, "min_size", 17.0)
    assert detector.detect(image) == []


def test_crowd_preset_runs_tiles_and_merges(weights_file, monkeypatch):
    det = rf.RetinaFaceDetector(weights=weights_file, preset="crowd")
    fake = _OnePriorNet()
    monkeypatch.setattr(det, "_model", fake)
    dets = det.detect(np.zeros((200, 300, 3), dtype=np.uint8))
    assert len(fake.seen) == 5  # whole image + 2 x 2 tiles
    # the whole-image hit (20, 12, 36, 28) and the top-left tile's identical hit merge into one box;
    # the other tiles each add their own box at their tile offset
    boxes = sorted(tuple(round(v) for v in d.box_xyxy) for d in dets)
    assert (20, 12, 36, 28) in boxes and len(boxes) == 4


def test_normalization_conventions():
    img = np.zeros((1, 1, 3), dtype=np.uint8)
    img[0, 0] = (255, 128, 0)  # R, G, B
    imagenet = rf.normalize_image(img, "imagenet")[0, 0]
    np.testing.assert_allclose(imagenet, [(255 - 0.485 * 255) / (0.229 * 255), (128 - 0.456 * 255) / (0.224 * 255),
                                          (0 - 0.406 * 255) / (0.225 * 255)], rtol=1e-5)
    bgr = rf.normalize_image(img, "bgr_mean")[0, 0]
    np.testing.assert_allclose(bgr, [0 - 104, 128 - 117, 255 - 123])


def test_pad_batch_pads_to_multiple_of_32():
    a = np.ones((33, 10, 3), dtype=np.float32)
    b = np.full((5, 70, 3), 2.0, dtype=np.float32)
    batch = rf.pad_batch([a, b])
    assert batch.shape == (2, 3, 64, 96)
    assert batch[0, :, :33, :10].min() == 1 and batch[0, :, 33:].max() == 0 and batch[0, :, :, 10:].max() == 0
    assert batch[1, :, :5, :70].min() == 2 and batch[1, :, 5:].max() == 0


def test_import_is_cheap_and_missing_torch_gives_install_hint(weights_file):
    out = import_and_build_without_torch("veilset.detectors.retinaface",
                                         f"m.RetinaFaceDetector(weights={weights_file!r})")
    assert "pip install 'veilset[retinaface]'" in out and "retinaface-pytorch" in out


def test_unknown_spec_option_is_a_value_error(weights_file):
    with pytest.raises(ValueError, match="retinaface: unknown option\\(s\\) max_size; accepted: weights, network"):
        build_detector(f"retinaface:weights={weights_file},max_size=960")
