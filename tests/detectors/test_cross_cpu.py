"""The default face detector answers the same on every x86 CPU family.

onnxruntime picks its int8 kernel by CPU: VNNI (32-bit sums) on recent Xeons and Zen 4/5, ``vpmaddubsw`` (saturating
16-bit pair sums) on AVX2-only CPUs such as Zen 3. This test runs the detector natively and under ``qemu-x86_64``
user-mode emulation of an AVX2-only CPU (``-cpu EPYC-Milan``, a Zen 3: no AVX-512, no VNNI; QEMU's TCG emulates
AVX2 but no AVX-512), and requires bit-identical network outputs and identical detections. It also shows that the
emulation really reaches the saturating kernel: on a host with VNNI, the full-range int8 recipe that main used
before (the one that failed on Zen 3) gives other numbers under emulation.

Needs ``qemu-x86_64`` (Debian: qemu-user; ``.ci/run`` installs it) on an x86-64 machine; skipped elsewhere.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from veilset.detectors.base import KERNEL_FLAGS, cpu_identity

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 only"),
              pytest.mark.skipif(shutil.which("qemu-x86_64") is None,
                                 reason="qemu-x86_64 not installed (apt-get install qemu-user; .ci/run does)")]

EMULATED_CPU = "EPYC-Milan"  # AMD Zen 3: AVX2 + FMA, no AVX-512, no VNNI

# The detectors run through the registry on a 256-px crop searched at 256 px: the same model, kernels and code path
# as at the default 1280 px, at 1/16 of the pixels of the astronaut's default pass (upscaled to 1024 px), because
# emulated fp32 runs ~500x slower than native: that pass alone took over 5 minutes under qemu, and CI timed out.
DETECTOR_SPECS = ("centerface:threads=1,max_side=256", "centerface:threads=1,max_side=256,precision=int8")
FP32_SPEC, INT8_SPEC = DETECTOR_SPECS

# Runs in a child process (natively or under qemu): prints one JSON line with the raw outputs' sha256 and detections.
PROBE = r"""
import hashlib, json, sys
import numpy as np
import cv2
import onnxruntime as ort
from PIL import Image
from veilset.detectors.centerface import INPUT_NAME, OUTPUT_NAMES
from veilset.detectors.package_photos import photo_path
from veilset.detectors.registry import build_detector

model_file, *specs = sys.argv[1:]
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
session = ort.InferenceSession(model_file, opts, providers=["CPUExecutionProvider"])
raw = {}
for name in ("astronaut.png", "grace_hopper.jpg"):
    rgb = np.asarray(Image.open(photo_path(name)).convert("RGB"))
    h, w = rgb.shape[0] // 32 * 32, rgb.shape[1] // 32 * 32
    outs = session.run(list(OUTPUT_NAMES[:3]), {INPUT_NAME: cv2.dnn.blobFromImage(np.ascontiguousarray(rgb[:h, :w]), 1.0)})
    raw[name] = [hashlib.sha256(np.ascontiguousarray(o).tobytes()).hexdigest() for o in outs]
result = {"raw": raw}
if model_file.endswith("int8.onnx"):
    image = np.asarray(Image.open(photo_path("astronaut.png")).convert("RGB"))[:256, 96:352]  # her face, 256 px
    for spec in specs:
        det = build_detector(spec)
        result[spec] = [d.to_dict() for d in det.detect(image)]
    result["identity_int8_sha256"] = det.identity()["int8_sha256"]
print(json.dumps(result))
"""


def _probe(model_file: str, cache_dir: str, emulate: bool) -> dict:
    cmd = [sys.executable, "-c", PROBE, model_file, *DETECTOR_SPECS]
    if emulate:
        cmd = ["qemu-x86_64", "-cpu", EMULATED_CPU] + cmd
    env = {**os.environ, "VEILSET_CACHE_DIR": cache_dir, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=540)  # < pytest-timeout: a clear error
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from veilset.detectors.centerface import INPUT_NAME, _dynamic_model_bytes, default_model_path
    from veilset.detectors.quantize import quantize_centerface

    folder = tmp_path_factory.mktemp("cross_cpu")
    cache = folder / "cache"
    fp32 = _dynamic_model_bytes(default_model_path())
    (folder / "int8.onnx").write_bytes(quantize_centerface(fp32, INPUT_NAME))
    (folder / "full_range.onnx").write_bytes(quantize_centerface(fp32, INPUT_NAME, reduce_range=False))
    # The detector's own cache, filled natively, so the emulated process loads the model instead of quantizing it
    # under emulation (minutes); the model it loads is checked against the native one below.
    subprocess.run([sys.executable, "-c",
                    "from veilset.detectors.registry import build_detector; build_detector('centerface:precision=int8')"],
                   env={**os.environ, "VEILSET_CACHE_DIR": str(cache)}, check=True, capture_output=True)
    return folder, str(cache)


# fp32 kernels sum in another order on each CPU family: measured between AVX-512 VNNI and the emulated Zen 3, scores
# differ by <= 4e-7 and box scales by <= 2e-6 (log units); the tolerance below is 100x that, in output units.
FP32_SCORE_TOL = 1e-4
FP32_BOX_TOL_PX = 0.05


@pytest.fixture(scope="module")
def native_and_emulated(models):
    folder, cache = models
    return (_probe(str(folder / "int8.onnx"), cache, emulate=False),
            _probe(str(folder / "int8.onnx"), cache, emulate=True))


def test_int8_option_is_bit_identical_on_an_avx2_only_cpu(native_and_emulated):
    native, emulated = native_and_emulated
    assert native["identity_int8_sha256"] == emulated["identity_int8_sha256"]
    assert emulated["raw"] == native["raw"]  # heatmap, scale and offset: the same bytes
    spec = INT8_SPEC
    assert emulated[spec] == native[spec]  # the same boxes and scores, to the bit
    assert any(d["score"] > 0.9 for d in native[spec])


def test_default_detector_agrees_on_an_avx2_only_cpu(native_and_emulated):
    native, emulated = native_and_emulated
    spec = FP32_SPEC
    assert len(emulated[spec]) == len(native[spec]) and any(d["score"] > 0.9 for d in native[spec])
    for a, b in zip(native[spec], emulated[spec]):
        assert abs(a["score"] - b["score"]) <= FP32_SCORE_TOL
        assert max(abs(u - v) for u, v in zip(a["box_xyxy"], b["box_xyxy"])) <= FP32_BOX_TOL_PX


def test_the_emulated_cpu_reaches_the_saturating_kernel(models):
    """Without this the test above could pass by running the same kernel twice."""
    if not {"avx512_vnni", "avx_vnni"} & set(cpu_identity()["kernel_flags"]):
        pytest.skip("this host has no VNNI: it runs the same AVX2 kernel as the emulated CPU")
    folder, cache = models
    native = _probe(str(folder / "full_range.onnx"), cache, emulate=False)
    emulated = _probe(str(folder / "full_range.onnx"), cache, emulate=True)
    assert emulated["raw"] != native["raw"]


def test_identity_records_the_cpu_that_ran():
    from veilset.detectors.registry import build_detector

    ident = build_detector("centerface").identity()
    assert ident["cpu"] == cpu_identity() and ident["cpu"]["machine"] == platform.machine()
    assert ident["precision"] == "fp32" and ident["runtime"].startswith("onnxruntime ")
    assert build_detector("centerface:precision=int8").identity()["int8_recipe"] == "static-u8s7-perchannel-minmax"
    assert set(ident["cpu"]["kernel_flags"]) <= set(KERNEL_FLAGS)
