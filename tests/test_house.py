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
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOMS = ("pipeline", "detectors", "segmentation", "release", "takedown", "audit")
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
    expected = {f"veilset/{p.name}" for p in (REPO / "veilset").glob("*.py")}
    assert {"veilset/plugins.py", "veilset/cli.py", "veilset/api.py"} <= expected
    for room in ROOMS:
        expected |= {f"veilset/{room}/{p.name}" for p in (REPO / room).glob("*.py")}
    assert expected <= set(names), sorted(expected - set(names))
    parser = configparser.ConfigParser()
    parser.read_string(entry_points)
    assert dict(parser["console_scripts"]) == {"veilset": "veilset.cli:main"}


# ------------------------------------------------------------------------------------ layers: one-way dependencies
# Lowest first. A module may import modules of its own unit and of lower layers: never sideways, never upwards,
# at module level or inside a function (a function-level import is for laziness, e.g. torch, never to hide a cycle).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("veilset.plugins",),  # the leaf: no project imports
    ("veilset.detectors", "veilset.segmentation"),  # the parts: detections and masks (their record types too)
    ("veilset.release",),  # the release format: it stores those records, so it sits above the parts
    ("veilset.pipeline", "veilset.takedown", "veilset.audit"),  # build, take down, audit
    ("veilset",),  # the front door: veilset/__init__, cli, api, catalog
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def project_modules(root: Path = REPO) -> dict[str, Path]:
    """Dotted name -> file of every module of the namespace (rooms mapped as setup.py's package_dir does)."""
    out = {}
    for top in ("veilset", *ROOMS, "release"):
        for path in sorted((root / top).rglob("*.py")) if (root / top).is_dir() else ():
            parts = list(path.relative_to(root).with_suffix("").parts)
            parts = parts if top == "veilset" else ["veilset", *parts]
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def unit_of(module: str) -> str:
    """``veilset.plugins``, ``veilset.<room>`` or ``veilset`` (the front door: everything else in veilset/)."""
    parts = module.split(".")
    if module == "veilset.plugins" or module.startswith("veilset.plugins."):
        return "veilset.plugins"
    if len(parts) > 1 and parts[1] in (*ROOMS, "release"):
        return ".".join(parts[:2])
    return "veilset"


@dataclass(frozen=True)
class ImportEdge:
    source: str  # importing module
    target: str  # imported project module
    where: str  # file:line
    in_function: bool


def import_edges(modules: dict[str, Path], root: Path = REPO) -> list[ImportEdge]:
    """Every import of a project module, module-level and inside functions (``from a import b`` is an edge to
    ``a.b`` when that is a module, else to ``a``; relative imports resolved)."""
    edges = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, in_function in _imports_with_scope(tree):
            for target in _targets(node, package, modules):
                if target != name:
                    edges.append(ImportEdge(name, target, f"{path.relative_to(root)}:{node.lineno}", in_function))
    return edges


def _imports_with_scope(tree: ast.AST, in_function: bool = False):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        yield from _imports_with_scope(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                              ast.Lambda)))


def _targets(node: ast.AST, package: str, modules: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(anchor + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
    out = []
    for n in names:
        while n and n not in modules:  # "veilset.detectors.base.Detection" -> the module that holds it
            n = n.rpartition(".")[0]
        if n and n.split(".")[0] == "veilset":
            out.append(n)
    return out


def layer_violations(edges: list[ImportEdge]) -> list[str]:
    out = []
    for e in edges:
        src, dst = unit_of(e.source), unit_of(e.target)
        if src == dst:
            continue
        if LAYER_OF[dst] >= LAYER_OF[src]:
            way = "sideways" if LAYER_OF[dst] == LAYER_OF[src] else "upwards"
            out.append(f"{e.where}: {e.source} imports {e.target} ({src} -> {dst}: {way}"
                       f"{', inside a function' if e.in_function else ''})")
    return out


def import_cycles(edges: list[ImportEdge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_dependencies_point_one_way_down_the_layers():
    modules = project_modules()
    assert {unit_of(m) for m in modules} <= set(LAYER_OF), "a unit missing from LAYERS"
    assert "veilset.plugins" in modules and "veilset.cli" in modules and "veilset.detectors.registry" in modules
    edges = import_edges(modules)
    assert len(edges) > 200 and any(e.in_function for e in edges)
    bad = layer_violations(edges)
    assert not bad, "imports against the layers (LAYERS in tests/test_house.py):\n" + "\n".join(bad)
    assert not [e for e in edges if unit_of(e.source) == "veilset.plugins"], "veilset.plugins must stay a leaf"


def test_no_import_cycles_between_modules_or_units():
    edges = import_edges(project_modules())
    cycles = import_cycles(edges)
    assert not cycles, f"import cycles (module level or through function-level imports): {cycles}"
    unit_edges = [ImportEdge(unit_of(e.source), unit_of(e.target), e.where, e.in_function) for e in edges
                  if unit_of(e.source) != unit_of(e.target)]
    assert not import_cycles(unit_edges)


def test_the_layer_scan_catches_sideways_upward_and_hidden_cycles(tmp_path):
    for folder, text in {
        "veilset/__init__.py": "", "veilset/plugins.py": "", "veilset/cli.py": "from veilset.pipeline import graph\n",
        "pipeline/__init__.py": "", "pipeline/graph.py": "import veilset.takedown.ledger\nfrom . import options\n",
        "pipeline/options.py": "def f():\n    from veilset.pipeline import graph\n",
        "takedown/__init__.py": "", "takedown/ledger.py": "def f():\n    from veilset.cli import main\n",
        "detectors/__init__.py": "", "detectors/base.py": "from veilset import plugins\nfrom veilset.plugins import Arg\n",
    }.items():
        (tmp_path / folder).parent.mkdir(exist_ok=True)
        (tmp_path / folder).write_text(text)
    modules = project_modules(tmp_path)
    edges = import_edges(modules, tmp_path)
    assert sorted((e.source, e.target, e.in_function) for e in edges) == sorted([
        ("veilset.cli", "veilset.pipeline.graph", False), ("veilset.pipeline.graph", "veilset.takedown.ledger", False),
        ("veilset.pipeline.graph", "veilset.pipeline.options", False),
        ("veilset.pipeline.options", "veilset.pipeline.graph", True), ("veilset.takedown.ledger", "veilset.cli", True),
        ("veilset.detectors.base", "veilset.plugins", False), ("veilset.detectors.base", "veilset.plugins", False)])
    assert [v.split(": ", 1)[1] for v in layer_violations(edges)] == [
        "veilset.pipeline.graph imports veilset.takedown.ledger (veilset.pipeline -> veilset.takedown: sideways)",
        "veilset.takedown.ledger imports veilset.cli (veilset.takedown -> veilset: upwards, inside a function)"]
    assert import_cycles(edges) == [["veilset.cli", "veilset.pipeline.graph", "veilset.pipeline.options",
                                     "veilset.takedown.ledger"]]
    (tmp_path / "takedown" / "ledger.py").write_text("")
    assert import_cycles(import_edges(modules, tmp_path)) == [["veilset.pipeline.graph", "veilset.pipeline.options"]]


def test_importing_a_room_or_the_plugins_does_not_drag_in_the_rooms_above():
    code = ("import sys\n"
            "import veilset.plugins\n"
            "assert sorted(m for m in sys.modules if m.startswith('veilset')) == ['veilset', 'veilset.plugins'], "
            "sorted(m for m in sys.modules if m.startswith('veilset'))\n"
            "import veilset.detectors.registry, veilset.segmentation.registry\n"
            "from veilset.detectors.registry import DETECTORS; DETECTORS.plugins()\n"
            "up = sorted(m for m in sys.modules if m.split('.')[:2] in (['veilset', 'pipeline'], ['veilset', 'takedown'],"
            " ['veilset', 'audit'], ['veilset', 'cli'], ['veilset', 'api']))\n"
            "assert not up, up\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
