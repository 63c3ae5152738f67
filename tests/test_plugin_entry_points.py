"""A third-party distribution adds a detector, a mask generator and an audit check through entry points.

The distribution is real: a tiny package with a setup.py, installed by pip (``--target``, no dependencies) into a
folder that the subprocesses below put on their path, so importlib.metadata finds its .dist-info like any
installed distribution's. Nothing is mocked; this process's registries are not touched.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

PACKAGE = '''
"""veilset plugins of a third party: a detector, a mask generator, an audit check."""
import numpy as np

from veilset.audit.findings import CheckResult
from veilset.detectors.base import FACE, Detection
from veilset.plugins import Arg, Args, Plugin, available

ARGS = Args(Arg("level", "int", 250, "grey level above which a pixel is 'bright'", lo=1, hi=255))


class BrightBox:
    """Detects the bounding box of the bright pixels, if any, as a face."""

    name, label = "bright_box", FACE

    def __init__(self, **options):
        self.level = ARGS.parse(options, self.name)["level"]

    def identity(self):
        return {"name": self.name, "label": FACE, "level": self.level, "version": 1}

    def detect(self, image):
        ys, xs = np.nonzero(image.min(axis=2) >= self.level)
        if not len(ys):
            return []
        return [Detection(FACE, (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), 0.9,
                          self.name)]

    def detect_batch(self, images):
        return [self.detect(i) for i in images]


class NoMasks:
    name = "no_masks"

    def identity(self):
        return {"name": self.name}

    def generate(self, image):
        return []


def _release_number(ctx):
    return CheckResult.from_findings("release_number", [], "the manifest has a release number",
                                     {"release": ctx.release.manifest["release"]})


BRIGHT_BOX = Plugin("detector", "bright_box", BrightBox, ARGS, tags=(FACE,), summary="bright pixels are faces",
                    check=lambda: available("a test plugin"))
NO_MASKS = Plugin("mask generator", "no_masks", NoMasks, summary="no masks at all")
RELEASE_NUMBER = Plugin("audit check", "release_number", _release_number, summary="the manifest is numbered")
'''

SETUP = '''
from setuptools import setup

setup(name="veilset-test-plugins", version="0.0.1", py_modules=["veilset_test_plugins"],
      entry_points={"veilset.detectors": ["bright_box = veilset_test_plugins:BRIGHT_BOX",
                                          "centerface = veilset_test_plugins:BRIGHT_BOX",
                                          "broken_one = veilset_test_plugins:NOT_THERE"],
                    "veilset.masks": ["no_masks = veilset_test_plugins:NO_MASKS"],
                    "veilset.audit_checks": ["release_number = veilset_test_plugins:RELEASE_NUMBER"]})
'''


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The distribution, pip-installed into its own folder."""
    pytest.importorskip("setuptools")
    src = tmp_path_factory.mktemp("src")
    (src / "setup.py").write_text(textwrap.dedent(SETUP))
    (src / "veilset_test_plugins.py").write_text(textwrap.dedent(PACKAGE))
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300, cwd=src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(target.glob("veilset_test_plugins-0.0.1.dist-info/entry_points.txt"))
    return target


def run(site: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=400, cwd=cwd, env=env)


def test_installed_plugins_are_listed_with_their_options_and_problems(site):
    proc = run(site, "-m", "veilset", "detectors", "--json")
    assert proc.returncode == 0, proc.stderr
    cat = json.loads(proc.stdout)
    [bright] = [d for d in cat["detectors"] if d["name"] == "bright_box"]
    assert bright["available"] and bright["tags"] == ["face"] and bright["reason"] == "a test plugin"
    assert bright["args"] == [{"name": "level", "type": "int in [1, 255]", "default": 250,
                               "help": "grey level above which a pixel is 'bright'"}]
    assert [d["name"] for d in cat["detectors"]][-1] == "bright_box"  # after the built-in ones
    assert "no_masks" in [m["name"] for m in cat["mask_generators"]]
    assert [c["name"] for c in cat["audit_checks"]][-1] == "release_number"
    problems = cat["problems"]
    assert "already provided by veilset" in problems["detector centerface (veilset-test-plugins)"]
    assert "NOT_THERE" in problems["detector broken_one"]
    centerface = next(d for d in cat["detectors"] if d["name"] == "centerface")
    assert centerface["summary"].startswith("CenterFace")  # the built-in one, not taken over
    text = run(site, "-m", "veilset", "detectors").stdout
    assert "bright_box[:key=value,...] [face]: available (a test plugin)" in text and "broken_one" in text
    assert "bright_box" in run(site, "-m", "veilset", "build", "--help").stdout


def test_installed_detector_builds_from_a_spec_and_bad_values_are_named(site):
    code = ("from veilset.detectors.registry import build_detector\n"
            "import numpy as np\n"
            "det = build_detector('bright_box:level=200')\n"
            "img = np.zeros((20, 30, 3), np.uint8); img[5:9, 10:16] = 220\n"
            "print(det.level, det.detect(img)[0].box_xyxy)\n"
            "for spec in ('bright_box:level=0', 'bright_box:colour=red', 'broken_one'):\n"
            "    try:\n"
            "        build_detector(spec)\n"
            "    except ValueError as err:\n"
            "        print(err)\n")
    proc = run(site, "-c", code)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "200 (10.0, 5.0, 16.0, 9.0)"
    assert lines[1] == "level must be an integer in [1, 255], got '0'"
    assert lines[2] == "bright_box: unknown option(s) colour; accepted: level"
    assert "'broken_one'" in lines[3] and "cannot be loaded" in lines[3]


@pytest.mark.slow
def test_a_build_and_an_audit_use_the_installed_plugins(site, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    face = np.full((48, 64, 3), 40, np.uint8)
    face[10:30, 20:40] = 255
    Image.fromarray(face).save(photos / "bright.png")
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(photos / "dark.png")
    out = tmp_path / "release"
    proc = run(site, "-m", "veilset", "build", str(photos), "--output", str(out), "--workers", "1",
               "--face-detector", "bright_box:level=250", "--plate-detector", "none", "--masks", "no_masks",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["models"]["face_detector"] == {"name": "bright_box", "label": "face", "level": 250,
                                                   "version": 1, "spec": "bright_box:level=250"}
    assert manifest["models"]["masks"] == {"name": "no_masks", "spec": "no_masks"}
    index = [json.loads(line) for e in manifest["index"] for line in (out / e["path"]).read_text().splitlines()]
    assert sorted(r["num_faces"] for r in index) == [0, 1]
    proc = run(site, "-m", "veilset", "audit", "--release", str(out), "--json", "--face-detector", "bright_box",
               cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: findings (the plugins' own business)
    report = json.loads(proc.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["release_number"]["status"] == "pass" and checks["release_number"]["stats"]["release"] == 1
    assert list(checks)[-1] == "release_number" and "integrity" in checks
