"""Release-folder housekeeping shared by build and takedown: whose folder it is, what belongs to a release, what
may go.

A build writes only into a folder that is absent, empty or a veilset release (``layout.MARKER_NAME`` holds the
release's identity; a release written before markers existed is known by a manifest that loads). It deletes only
files that it (or an earlier build or takedown) wrote: files an earlier manifest or index listed and no longer
does, its own temporary files, its own staged records. A file anybody else put anywhere in the folder stays.
"""
from __future__ import annotations

import json
import os
import re
import uuid
from datetime import datetime, timezone

from veilset.release import index, layout, manifest as release_manifest, storage
from veilset.release.manifest import Manifest

_OWN_TEMP = re.compile(r"^\..+" + re.escape(storage.TMP_MARK) + r"[0-9a-f]{32}$")
_OWN_STAGED = re.compile(r"^sa_[0-9a-f]{32}\.pkl$")
# a build's progress counters under PROGRESS_DIR (veilset.pipeline.progress), and their temporaries
OWN_PROGRESS = re.compile(r"^[0-9a-f]{32}" + re.escape(layout.PROGRESS_SUFFIX) + r"(?:\.[0-9a-f]{32}\.tmp)?$")


def check_output_dir(path: str) -> None:
    """Refuse (``ValueError`` naming what is there) a folder that is not absent, empty or a veilset release."""
    if storage.is_remote(path) or not os.path.exists(path):
        return
    if not os.path.isdir(path):
        raise ValueError(f"--output {path!r} exists and is not a folder: refusing to write there")
    # a writer starting now: its lock file and its release marker, each maybe still being written, are no content
    starting = tuple("." + name + storage.TMP_MARK for name in (layout.LOCK_NAME, layout.MARKER_NAME))
    entries = sorted(e for e in os.listdir(path) if e != layout.LOCK_NAME and not e.startswith(starting))
    if not entries or is_release(path):
        return
    shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
    raise ValueError(f"--output {path!r} is not empty and is not a veilset release (no {layout.MARKER_NAME}); it "
                     f"holds {shown}: refusing to write into it (give an absent or empty folder)")


def is_release(path: str) -> bool:
    """A veilset release folder: it carries the marker, or (older releases) a manifest that loads."""
    if os.path.isfile(os.path.join(path, layout.MARKER_NAME)):
        return True
    if not os.path.isfile(os.path.join(path, layout.MANIFEST_NAME)):
        return False
    try:
        release_manifest.load_manifest(path)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def mark(path: str) -> None:
    """Give the folder the release marker (its identity) unless it has one; the first write of a build."""
    marker = os.path.join(path, layout.MARKER_NAME)
    if storage.is_remote(path) or os.path.exists(marker):
        return
    identity = {"format": "veilset-release", "release_uuid": uuid.uuid4().hex,
                "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    storage.atomic_write(marker, json.dumps(identity, sort_keys=True).encode() + b"\n")


def kept_files(release_dir: str, manifest: Manifest) -> set[str]:
    """Every file of the release: what the manifest lists, and the per-image files the index names."""
    keep = manifest.listed_paths() | {layout.MARKER_NAME}
    for entry in manifest.index:
        keep.update(r["file_name"] for r in index.read(release_dir, entry.path) if r.get("file_name"))
    return keep


def current_release(release_dir: str) -> Manifest | None:
    """The release in ``release_dir`` (None when there is none). A manifest that does not load is an error: a
    rebuild must not forget what its release took down."""
    if not storage.exists(storage.join(release_dir, layout.MANIFEST_NAME)):
        return None
    try:
        return release_manifest.read(release_dir)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--output {release_dir!r}: its {layout.MANIFEST_NAME} does not load ({err}): refusing "
                         f"to replace a release whose takedown history cannot be read") from err


def release_files(release_dir: str) -> set[str]:
    """The files the current release in ``release_dir`` owns (empty when there is none)."""
    current = None if storage.is_remote(release_dir) else current_release(release_dir)
    return set() if current is None else kept_files(release_dir, current)


def remove_superseded(release_dir: str, before: set[str], manifest: Manifest) -> list[str]:
    """After ``manifest`` is committed: delete the files of the earlier release (``before``) it no longer lists,
    files an interrupted writer left (``unlisted_files``), writers' own temporary files, staged records and
    progress counters (a crashed build's too). Nothing else is touched. Returns the removed paths."""
    if storage.is_remote(release_dir):
        return []
    kept = kept_files(release_dir, manifest)
    gone = sorted((before - kept) | set(unlisted_files(release_dir, kept)))
    for rel in gone:
        storage.remove(storage.join(release_dir, rel))
        storage.remove_empty_dir(os.path.dirname(storage.join(release_dir, rel)))
    return gone + _remove_own_scratch(release_dir)


def unlisted_files(release_dir: str, kept: set[str]) -> list[str]:
    """Files with the exact name of a file a writer writes under a generation (``layout.is_generation_file``)
    that the current release does not list (``kept``): what a killed build or apply left before its commit (the
    next generation's) or after it (the last generation's)."""
    return [rel for rel in _walk(release_dir) if layout.is_generation_file(rel) and rel not in kept]


def pending_generation(release_dir: str) -> int | None:
    """The generation an interrupted writer was writing (its journal says), or None."""
    for journal, field_name in ((layout.BUILD_JOURNAL, "generation"), (layout.TAKEDOWN_JOURNAL, "release_after")):
        path = os.path.join(release_dir, journal)
        if os.path.isfile(path):
            try:
                return int(json.loads(storage.read(path))[field_name])
            except (ValueError, KeyError, TypeError):
                continue
    return None


def _walk(release_dir: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(release_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [os.path.relpath(os.path.join(root, f), release_dir).replace(os.sep, "/") for f in files]
    return sorted(out)


def _remove_own_scratch(release_dir: str) -> list[str]:
    """This writer's temporary files and staged records, then the build journal last (while it is there, the
    folder says a build was interrupted)."""
    removed = []
    for root, dirs, files in os.walk(release_dir):
        dirs[:] = [d for d in dirs if d != layout.TAKEDOWN_DIR]  # a takedown's stage is the takedown's
        rel = os.path.relpath(root, release_dir).replace(os.sep, "/")
        staging, progress = rel.split("/")[0] == layout.STAGING, rel == layout.PROGRESS_DIR
        for f in files:
            if _OWN_TEMP.match(f) or (staging and _OWN_STAGED.match(f)) or (progress and OWN_PROGRESS.match(f)):
                storage.remove(os.path.join(root, f))
                removed.append(os.path.relpath(os.path.join(root, f), release_dir).replace(os.sep, "/"))
    for root, _dirs, _files in sorted(os.walk(os.path.join(release_dir, layout.STAGING)), reverse=True):
        storage.remove_empty_dir(root)  # the staged-record and progress folders
    if os.path.isfile(os.path.join(release_dir, layout.BUILD_JOURNAL)):
        storage.remove(os.path.join(release_dir, layout.BUILD_JOURNAL))
        removed.append(layout.BUILD_JOURNAL)
    storage.remove_empty_dir(os.path.join(release_dir, layout.STAGING))
    return removed
