"""Every user mistake: one line on stderr naming the bad value (and the fix), exit 2, no traceback (``--debug``
shows one), and nothing created or changed before validation passes."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from veilset.cli import main


@pytest.fixture()
def photos(tmp_path):
    from PIL import Image

    d = tmp_path / "in"
    d.mkdir()
    Image.new("RGB", (64, 48), (120, 90, 60)).save(d / "a.jpg")
    return d


@pytest.fixture(autouse=True)
def no_torch_hub(tmp_path, monkeypatch):
    """No weights in a torch hub cache: retinaface must not find any."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.chdir(tmp_path)


def _run(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("veilset")]
    return rc, err, lines


def _assert_one_line(rc, err, lines, *needles):
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _snapshot(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs + ["."])


@pytest.mark.parametrize("spec, needles", [
    ("sam:vit_b:/no/such.pth", ["/no/such.pth"]),
    ("sam:vit_q", ["vit_q", "vit_b"]),
])
def test_build_bad_masks(capsys, tmp_path, photos, spec, needles):
    before = _snapshot(tmp_path)
    rc, err, lines = _run(capsys, ["build", str(photos), "--output", str(tmp_path / "out"), "--masks", spec])
    _assert_one_line(rc, err, lines, *needles)
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("spec, needle", [("retinaface", "weights"), ("egoblur_face", "weights")])
def test_build_torch_detector_without_weights(capsys, tmp_path, photos, spec, needle):
    before = _snapshot(tmp_path)
    rc, err, lines = _run(capsys, ["build", str(photos), "--output", str(tmp_path / "out"), "--face-detector", spec])
    _assert_one_line(rc, err, lines, spec.split(":")[0], needle)
    assert _snapshot(tmp_path) == before


def test_build_missing_input(capsys, tmp_path):
    rc, err, lines = _run(capsys, ["build", str(tmp_path / "no-such-dir"), "--output", str(tmp_path / "out")])
    _assert_one_line(rc, err, lines, "no-such-dir")
    assert not (tmp_path / "out").exists()


def test_build_wrong_ledger_file(capsys, tmp_path, photos):
    bad = tmp_path / "ledger.sqlite"
    bad.write_text("this is not a database\n" * 50)
    before = bad.read_bytes()
    rc, err, lines = _run(capsys, ["build", str(photos), "--output", str(tmp_path / "out"), "--ledger", str(bad)])
    _assert_one_line(rc, err, lines, str(bad), "ledger")
    assert bad.read_bytes() == before and not (tmp_path / "out").exists()


def test_status_other_sqlite_file(capsys, tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    rc, err, lines = _run(capsys, ["takedown", "status", "--ledger", str(other)])
    _assert_one_line(rc, err, lines, str(other), "ledger")
    with sqlite3.connect(other) as conn:
        assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["t"]


def test_apply_on_a_folder_that_is_not_a_release(capsys, tmp_path):
    ledger = tmp_path / "l.sqlite"
    from veilset.takedown.ledger import Ledger

    Ledger(str(ledger)).close()
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    before = _snapshot(folder)
    rc, err, lines = _run(capsys, ["takedown", "apply", "--ledger", str(ledger), "--release", str(folder)])
    _assert_one_line(rc, err, lines, str(folder), "release")
    assert _snapshot(folder) == before


def test_ingest_missing_maildir_creates_no_ledger(capsys, tmp_path):
    ledger = tmp_path / "new.sqlite"
    rc, err, lines = _run(capsys, ["takedown", "ingest", "--ledger", str(ledger), "--maildir", "/no/such"])
    _assert_one_line(rc, err, lines, "/no/such", "--maildir")
    assert not ledger.exists() and not list(tmp_path.glob("new.sqlite*"))


@pytest.mark.slow
def test_console_script_one_line_and_debug_traceback(tmp_path):
    """Through the real console entry point in a subprocess: one line, exit 2; --debug adds the traceback."""
    argv = [sys.executable, "-m", "veilset", "takedown", "ingest", "--ledger", str(tmp_path / "l.sqlite"),
            "--maildir", "/no/such"]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "/no/such" in res.stderr, res.stderr
    res = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "Traceback" in res.stderr, res.stderr
