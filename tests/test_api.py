"""The Python API (``veilset.build``, ``veilset.Release``, ``veilset.audit_release``, ``veilset.takedown_*``) and
the README's example, run as written."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_api_example() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    # The README's Python blocks; the API example is the one that builds a release with veilset.build.
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "veilset.build(" in block]
    return code


def test_import_veilset_stays_light():
    code = ("import sys, veilset; assert callable(veilset.build) and 'veilset.api' in sys.modules;"
            "assert 'apache_beam' not in sys.modules and 'veilset.pipeline.graph' not in sys.modules, 'heavy'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    res = subprocess.run([sys.executable, "-c", "import sys, veilset; print('veilset.api' in sys.modules)"],
                         check=True, capture_output=True, text=True, timeout=300)
    assert res.stdout.strip() == "False"


def test_build_rejects_a_bad_option_before_writing(tmp_path):
    import veilset

    with pytest.raises(ValueError, match="workers"):
        veilset.build([str(tmp_path)], str(tmp_path / "out"), workers=0)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_readme_api_example(tmp_path):
    """The README's example, as written, from a folder of package photos (``photos/``)."""
    from veilset.detectors.package_photos import photo_path

    import shutil

    (tmp_path / "photos").mkdir()
    for name in ("astronaut.png", "coffee.png"):
        shutil.copy(photo_path(name), tmp_path / "photos" / name)
    res = subprocess.run([sys.executable, "-c", readme_api_example()], cwd=tmp_path, capture_output=True,
                         text=True, timeout=1200)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "published 2" in res.stdout and "audit PASSED" in res.stdout, res.stdout
    import veilset

    release = veilset.Release(str(tmp_path / "release"))
    assert release.version == 1 and release.counts["published"] == 2
    ids = [r["image_id"] for r in release.records()]
    assert len(ids) == 2 and release.image(ids[0])[:2] == b"\xff\xd8"
    assert sorted(release.to_pandas()["image_id"]) == sorted(ids)
    assert len(release.to_hf_dataset()) == 2
    with pytest.raises(KeyError):
        release.image("sa_" + "0" * 32)
