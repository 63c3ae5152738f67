"""One import namespace: the rooms (pipeline/, detectors/, ...) stay top-level folders of the repository but are
imported, and installed, only as ``veilset.<room>``. A module imported under two names is two modules (two
detector registries, two sets of classes that Beam pickles by name), so bare ``pipeline`` etc. must never be
imported, even though they are importable from the repository root."""
from __future__ import annotations

import ast
import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("pipeline", "detectors", "segmentation", "takedown", "audit", "release")
SCANNED = ("veilset", *ROOMS, "tests", "benchmarks")
SKIP_DIRS = {"__pycache__", ".venv", "build", "dist", ".git", ".pytest_cache"}

# "from pipeline.x import", "import detectors", "-m pipeline.samples" inside a string (code run in a subprocess)
_BARE_IN_TEXT = re.compile(rf"(?:\bfrom\s+(?:{'|'.join(ROOMS)})(?:\.\w+)*\s+import\b"
                           rf"|\bimport\s+(?:{'|'.join(ROOMS)})(?:\.\w+)*\s*(?:$|as\b|,|;)"
                           rf"|-m\s+(?:{'|'.join(ROOMS)})\.)", re.M)


def python_files(root: Path = REPO) -> list[Path]:
    files = [root / "setup.py"] if (root / "setup.py").exists() else []
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(root / top):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            files += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
    return files


def _is_room_module(dotted: str, root: Path) -> bool:
    """``dotted`` (``"pipeline.samples"``) names a module of a room in the source tree at ``root``."""
    parts = dotted.split(".")  # a room's bare name alone ("audit") is also a subcommand or a field name: not flagged
    if len(parts) < 2 or parts[0] not in ROOMS or not all(p.isidentifier() for p in parts):
        return False
    base = root.joinpath(*parts)
    return (base.with_suffix(".py")).is_file() or (base / "__init__.py").is_file()


def bare_room_references(path: Path, root: Path = REPO) -> list[str]:
    """Every import of a bare room (``import pipeline.ids``, ``from detectors import ops``) in ``path``, and every
    string that names a bare room's module (``"pipeline.cli"``, mock/monkeypatch targets, code for ``python -c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    where = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{where}:{node.lineno}: import {a.name}" for a in node.names if a.name.split(".")[0] in ROOMS]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ROOMS:
                found.append(f"{where}:{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if _is_room_module(text.split(":")[0], root) or _BARE_IN_TEXT.search(text):
                found.append(f"{where}:{node.lineno}: string {text[:80]!r}")
    return found


def test_no_code_imports_a_bare_room():
    files = python_files()
    assert len(files) > 100 and REPO / "veilset" / "cli.py" in files and REPO / "tests" / "factories.py" in files
    found = [hit for path in files if path != Path(__file__).resolve() for hit in bare_room_references(path)]
    assert not found, "import the rooms as veilset.<room>:\n" + "\n".join(found)


def test_the_scan_catches_bare_imports_and_module_strings(tmp_path):  # (this file is not scanned: it holds these)
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "pipeline" / "cli.py").write_text("")
    (tmp_path / "tests").mkdir()
    bad = tmp_path / "tests" / "test_x.py"
    bad.write_text("import pipeline\nimport detectors.ops as ops\nfrom audit import findings\n"
                   "from segmentation.rle import decode_rle\n"
                   "def f():\n    from takedown import intake\n"
                   "CMD = ['python', '-m', 'pipeline.cli']\nCODE = 'from takedown.ledger import Ledger'\n"
                   "OK = ['veilset.pipeline.cli', 'audit.json', 'from veilset.audit import cli', 'pipeline/ids.py']\n"
                   "from veilset.pipeline import ids\nfrom . import sibling\n")
    assert sorted(hit.split(": ", 1)[1] for hit in bare_room_references(bad, tmp_path)) == sorted([
        "import pipeline", "import detectors.ops", "from audit import ...", "from segmentation.rle import ...",
        "from takedown import ...", "string 'pipeline.cli'", "string 'from takedown.ledger import Ledger'"])


def test_rooms_are_loaded_only_through_the_namespace():
    """By now pytest has imported every test module (and through them the rooms): each once, as veilset.<room>,
    from this checkout's folders (the editable install maps veilset.pipeline to ./pipeline)."""
    import veilset
    import veilset.cli  # noqa: F401
    import veilset.pipeline.graph  # noqa: F401

    assert Path(veilset.__file__).resolve() == REPO / "veilset" / "__init__.py"
    for room in ROOMS:
        module = __import__(f"veilset.{room}", fromlist=["_"])
        assert Path(module.__file__).resolve() == REPO / room / "__init__.py"
    bare = sorted(name for name in sys.modules if name.split(".")[0] in ROOMS)
    assert not bare, f"bare room modules were imported (a second copy of the veilset ones): {bare}"


def test_version_and_python_dash_m():
    import veilset

    proc = subprocess.run([sys.executable, "-m", "veilset", "--version"], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"veilset {veilset.__version__}" and veilset.__version__[0].isdigit()


@pytest.mark.slow
def test_wheel_holds_only_the_veilset_namespace(tmp_path):
    """Built offline from a copy of the source folders (no build/ or egg-info left in the checkout)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "setup.py", src / "setup.py")
    for top in ("veilset", *ROOMS):
        shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", str(src), "-w", str(tmp_path / "dist")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = (tmp_path / "dist").glob("veilset-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        record = [line.split(",")[0] for line in zf.read(f"{dist_info}/RECORD").decode().splitlines() if line]
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert re.fullmatch(r"veilset-[^/-]+\.dist-info", dist_info)
    assert {n.split("/")[0] for n in names} == {"veilset", dist_info}
    assert sorted(record) == sorted(names)
    expected = {f"veilset/{f}" for f in ("__init__.py", "__main__.py", "cli.py")}
    for room in ROOMS:
        expected |= {f"veilset/{room}/{p.name}" for p in (REPO / room).glob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert dict(parser["console_scripts"]) == {"veilset": "veilset.cli:main"}
