"""Input expansion: files, folders (recursive) and globs, local or any Beam filesystem (gs://, s3://...)."""
from __future__ import annotations

import glob
import os
from typing import Iterable

from veilset.release import storage


def _local_files(pattern: str) -> list[str]:
    if os.path.isdir(pattern):
        out = []
        for root, dirs, files in os.walk(pattern):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        return out
    if os.path.isfile(pattern):
        return [pattern]
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    raise ValueError(f"input not found: {pattern!r}")


def _remote_files(pattern: str) -> list[str]:
    # A folder is matched recursively; a glob as given.
    queries = [pattern] if glob.has_magic(pattern) else [pattern, pattern.rstrip("/") + "/**"]
    found = storage.match(queries)
    if not found:
        raise ValueError(f"input not found: {pattern!r}")
    return found


def expand_inputs(patterns: Iterable[str], exclude_under: str | None = None) -> list[str]:
    """Every input file, sorted and de-duplicated by path; nothing under ``exclude_under`` (the output)."""
    files: set[str] = set()
    for pattern in patterns:
        for f in (_remote_files(pattern) if storage.is_remote(pattern) else _local_files(pattern)):
            files.add(f if storage.is_remote(f) else os.path.abspath(f))
    if exclude_under and not storage.is_remote(exclude_under):
        root = os.path.abspath(exclude_under) + os.sep
        files = {f for f in files if not f.startswith(root)}
    if not files:
        raise ValueError(f"no input files in {list(patterns)!r}")
    return sorted(files)
