"""Release-folder housekeeping shared by build and takedown: what belongs to a release, what must go."""
from __future__ import annotations

import os
import shutil

from veilset.release import index, layout, registry, storage
from veilset.release.manifest import Manifest


def check_output_dir(path: str) -> None:
    """Refuse to build into a folder that holds something other than a veilset release."""
    if storage.is_remote(path) or not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"--output {path!r} exists and is not a folder")
    entries = [e for e in os.listdir(path) if e != layout.STAGING]
    if entries and not os.path.exists(os.path.join(path, layout.MANIFEST_NAME)):
        raise ValueError(f"--output {path!r} is not empty and holds no {layout.MANIFEST_NAME}: refusing to write "
                         "into it")


def kept_files(release_dir: str, manifest: Manifest) -> set[str]:
    """Every file of the release: what the manifest lists, and the per-image files the index names."""
    keep = manifest.listed_paths()
    for entry in manifest.index:
        keep.update(r["file_name"] for r in index.read(release_dir, entry.path) if r.get("file_name"))
    return keep


def remove_unlisted(release_dir: str, manifest: Manifest) -> list[str]:
    """Delete shard files of earlier builds that this manifest does not list, temp files and the staging dir.

    Only the folders formats own are touched. Per-image JPEGs under images/ are kept when the index lists them
    (file_name). Returns the removed relative paths. Local folders only (object stores overwrite in place).
    """
    if storage.is_remote(release_dir):
        return []
    keep = kept_files(release_dir, manifest)
    removed = []
    for sub in registry.managed_dirs():
        removed += _remove_unkept(release_dir, sub, keep)
    for f in os.listdir(release_dir):
        if storage.TMP_MARK in f:
            os.unlink(os.path.join(release_dir, f))
            removed.append(f)
    shutil.rmtree(os.path.join(release_dir, layout.STAGING), ignore_errors=True)
    return removed


def _remove_unkept(release_dir: str, sub: str, keep: set[str]) -> list[str]:
    removed = []
    top = os.path.join(release_dir, sub)
    for root, _dirs, files in os.walk(top, topdown=False):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), release_dir).replace(os.sep, "/")
            if rel not in keep:
                os.unlink(os.path.join(root, f))
                removed.append(rel)
        if root != top and not os.listdir(root):
            os.rmdir(root)
    return removed
