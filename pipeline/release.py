"""Release-folder housekeeping shared by build and takedown: what belongs to a release, what must go."""
from __future__ import annotations

import os
import shutil
from typing import Any

from veilset.pipeline.manifest import MANIFEST_NAME, TMP_MARK

MANAGED_DIRS = ("parquet", "coco", "sa1b", "index", "images")
STAGING = ".staging"


def listed_files(manifest: dict[str, Any]) -> set[str]:
    """Relative paths of every file a manifest accounts for (shards, index, rejects, manifest)."""
    out = {MANIFEST_NAME, manifest["rejects"]}
    out.update(e["path"] for e in manifest["shards"])
    out.update(e["path"] for e in manifest["index"])
    return out


def check_output_dir(path: str) -> None:
    """Refuse to build into a folder that holds something other than a veilset release."""
    if "://" in path or not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"--output {path!r} exists and is not a folder")
    entries = [e for e in os.listdir(path) if e != STAGING]
    if entries and not os.path.exists(os.path.join(path, MANIFEST_NAME)):
        raise ValueError(f"--output {path!r} is not empty and holds no {MANIFEST_NAME}: refusing to write into it")


def remove_unlisted(release_dir: str, manifest: dict[str, Any]) -> list[str]:
    """Delete shard files of earlier builds that this manifest does not list, temp files and the staging dir.

    Only the managed sub-folders are touched. Per-image JPEGs under images/ are kept when the index lists
    them (file_name). Returns the removed relative paths. Local folders only (object stores overwrite in place).
    """
    if "://" in release_dir:
        return []
    keep = listed_files(manifest)
    from veilset.pipeline.shards import read_index

    for entry in manifest["index"]:
        keep.update(r["file_name"] for r in read_index(release_dir, entry["path"]) if r.get("file_name"))
    removed = []
    for sub in MANAGED_DIRS:
        top = os.path.join(release_dir, sub)
        for root, _dirs, files in os.walk(top, topdown=False):
            for f in files:
                rel = os.path.relpath(os.path.join(root, f), release_dir).replace(os.sep, "/")
                if rel not in keep:
                    os.unlink(os.path.join(root, f))
                    removed.append(rel)
            if root != top and not os.listdir(root):
                os.rmdir(root)
    for f in os.listdir(release_dir):
        if TMP_MARK in f:
            os.unlink(os.path.join(release_dir, f))
            removed.append(f)
    shutil.rmtree(os.path.join(release_dir, STAGING), ignore_errors=True)
    return removed
