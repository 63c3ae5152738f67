"""kill -9 at chosen points of a writer (build, takedown apply), and what the folder must look like afterwards.

A writer run with ``VEILSET_FAULT_LOG`` lists its change points (every write, rename and deletion through
``release.storage``); run again with ``VEILSET_FAULT_AT=N`` it dies at the N-th (``os._exit(137)``: no cleanup,
exactly as under kill -9). ``check_interrupted`` then audits the folder: the release its manifest lists must be
whole (no finding on any listed file), and whatever the writer left is reported as left by an interrupted writer.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Sequence

from veilset.audit.integrity import check_integrity, interrupted_writer
from veilset.audit.metadata import check_metadata
from veilset.audit.release import Release
from veilset.audit.takedowns import check_takedowns
from veilset.release import storage
from veilset.release.manifest import load_manifest

KILLED = 137


def change_points(argv: Sequence[str], log_path: str, env: dict | None = None) -> list[str]:
    """The change points of one uninterrupted run of ``argv`` (a subprocess): one line each."""
    if os.path.exists(log_path):
        os.unlink(log_path)
    run(argv, {**(env or {}), storage.FAULT_LOG: log_path}, expect=0)
    with open(log_path, encoding="utf-8") as fh:
        return [line.split(" ", 2)[2].strip() for line in fh]


def spread(n_points: int, wanted: int) -> list[int]:
    """``wanted`` kill points (1-based) spread over ``n_points``, first and last included."""
    if n_points <= wanted:
        return list(range(1, n_points + 1))
    return sorted({1 + round(k * (n_points - 1) / (wanted - 1)) for k in range(wanted)})


def run(argv: Sequence[str], env: dict, expect: int) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == expect, f"{argv} exited {proc.returncode}, wanted {expect}:\n{proc.stderr[-3000:]}"
    return proc


def kill_at(argv: Sequence[str], point: int) -> None:
    run(argv, {storage.FAULT_AT: str(point)}, expect=KILLED)


def tree(root: str) -> dict[str, str]:
    """Every file under ``root`` -> sha256; the manifest without its ``created`` time."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as fh:
                data = fh.read()
            if rel == "manifest.json":
                doc = json.loads(data)
                doc.pop("created")
                data = json.dumps(doc, sort_keys=True).encode()
            out[rel] = hashlib.sha256(data).hexdigest()
    return out


def manifest_state(root: str) -> str:
    doc = load_manifest(root)
    doc.pop("created")
    return json.dumps(doc, sort_keys=True)


def check_interrupted(root: str, ledger=None, metadata: bool = True) -> list[str]:
    """Audit a folder a writer was killed in; returns the findings' messages. The listed release must be whole:
    every finding is about a file no release lists (the writer's leftovers) or is the one finding that says an
    interrupted writer must be rerun."""
    release = Release(root)
    listed = release.listed_files() | {r.get("file_name") for _, r in release.all_index_rows() if r.get("file_name")}
    results = [check_integrity(release)] + ([check_metadata(release)] if metadata else [])
    if ledger is not None:
        results.append(check_takedowns(release, ledger))
    findings = [f for r in results for f in r.findings]
    for f in findings:
        on_leftover = f.file.split(":", 1)[0] not in listed
        assert on_leftover or f.message.startswith("an interrupted"), f"the listed release is damaged: {f}"
    if findings:
        assert interrupted_writer(root) is not None, "files left behind without a writer's journal"
    return [f.message for f in findings]


def fresh_copy(src: str, dst: str) -> str:
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


PYTHON = sys.executable
