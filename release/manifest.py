"""``manifest.json``: one versioned frozen dataclass, written and read here only.

The build creates release 1 (``Manifest.for_build``); a takedown derives release N+1 (``Manifest.after_takedown``).
The JSON is canonical (sorted keys, indent 1), so equal manifests give equal bytes. ``load_manifest`` returns the
raw dict (format version checked) for readers that must cope with a damaged manifest (the audit).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from veilset.release import layout, storage
from veilset.release.canonical import dumps_json
from veilset.release.format import ShardKey
from veilset.release.index import NAME as INDEX
from veilset.release.log import LogEntry, entry_sha256
from veilset.release.records import ShardFile

FORMAT_VERSION = 1
MANIFEST_NAME = layout.MANIFEST_NAME
LOG_HEAD = "log_head_sha256"  # sha256 of the log's last entry (``log_head``)
# Why an input is not published though readable: the keys of ``duplicates_by_reason`` and ``blocked_by_reason``
SAME_SOURCE, SAME_PIXELS, NEAR_DUPLICATE = "same_source", "same_pixels", "near_duplicate"
DUPLICATE_REASONS = (SAME_SOURCE, SAME_PIXELS, NEAR_DUPLICATE)
BLOCKED_REASONS = ("removed_id", "removed_content", "removed_pixels", NEAR_DUPLICATE)
# config ``near_duplicates``: near-copies among a build's inputs publish one (the others are duplicates) or all
# (each marked ``near_duplicate_of`` the one it copies)
PUBLISH_ONE, PUBLISH_ALL = "publish-one", "publish-all"
NEAR_DUPLICATE_MODES = (PUBLISH_ONE, PUBLISH_ALL)


@dataclass(frozen=True)
class Counts:
    """Where every input went. ``removed`` appears with the first takedown."""

    input: int
    published: int
    rejected: int
    duplicates: int
    blocked: int
    removed: int | None = None

    def conserved(self) -> bool:
        out = self.published + self.rejected + self.duplicates + self.blocked + (self.removed or 0)
        return self.input == out

    def to_dict(self) -> dict[str, int]:
        out = {"input": self.input, "published": self.published, "rejected": self.rejected,
               "duplicates": self.duplicates, "blocked": self.blocked}
        if self.removed is not None:
            out["removed"] = self.removed
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Counts":
        removed = d.get("removed")
        return cls(int(d["input"]), int(d["published"]), int(d["rejected"]), int(d["duplicates"]),
                   int(d["blocked"]), None if removed is None else int(removed))


@dataclass(frozen=True)
class Manifest:
    release: int
    created: str
    num_shards: int
    formats: tuple[str, ...]
    counts: Counts
    rejects_by_reason: dict[str, int]
    shards: tuple[ShardFile, ...]  # data files of every listed format, sorted by (format, shard)
    index: tuple[ShardFile, ...]
    config: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    log: tuple[LogEntry, ...] = ()
    rejects: str = layout.REJECTS_NAME
    format_version: int = FORMAT_VERSION
    # why inputs were blocked (removed_id, removed_content, removed_pixels, near_duplicate): listed when any were
    blocked_by_reason: dict[str, int] = field(default_factory=dict)
    # LOG_HEAD written next to a non-empty log; False only for a manifest read without it (written before it), so
    # that it round-trips byte for byte; a takedown's next release binds it (``after_takedown``)
    log_head_bound: bool = True
    # the crop windows of the removed images (``layout.windows_name``; path, sha256), blocked by every later build
    removed_windows: tuple[str, str] | None = None
    # why inputs were duplicates (same_source, same_pixels, near_duplicate): listed when any were; their sum is
    # counts.duplicates
    duplicates_by_reason: dict[str, int] = field(default_factory=dict)
    # published images that are near-copies of another published one (--near-duplicates publish-all): listed when any
    near_duplicates_published: int = 0

    # ------------------------------------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version, "release": self.release, "created": self.created,
            "num_shards": self.num_shards, "formats": list(self.formats), "counts": self.counts.to_dict(),
            "rejects_by_reason": dict(self.rejects_by_reason),
            **({"blocked_by_reason": dict(self.blocked_by_reason)} if self.blocked_by_reason else {}),
            **({"duplicates_by_reason": dict(self.duplicates_by_reason)} if self.duplicates_by_reason else {}),
            **({"near_duplicates_published": self.near_duplicates_published}
               if self.near_duplicates_published else {}),
            "shards": [f.to_dict() for f in self.shards], "index": [f.to_dict() for f in self.index],
            "rejects": self.rejects, "config": self.config, "models": self.models,
            "log": [e.to_dict() for e in self.log],
            **({LOG_HEAD: log_head(self.log)} if self.log and self.log_head_bound else {}),
            **({"removed_windows": {"path": self.removed_windows[0], "sha256": self.removed_windows[1]}}
               if self.removed_windows else {}),
        }

    def to_bytes(self) -> bytes:
        return dumps_json(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Manifest":
        _check_version(d, MANIFEST_NAME)
        return cls(
            release=int(d["release"]), created=str(d["created"]), num_shards=int(d["num_shards"]),
            formats=tuple(d["formats"]), counts=Counts.from_dict(d["counts"]),
            rejects_by_reason={str(k): int(v) for k, v in d["rejects_by_reason"].items()},
            shards=tuple(ShardFile.from_dict(e) for e in d["shards"]),
            index=tuple(ShardFile.from_dict(e) for e in d["index"]), config=dict(d["config"]),
            models=dict(d["models"]), log=tuple(LogEntry.from_dict(e) for e in d.get("log", [])),
            rejects=str(d["rejects"]), format_version=int(d["format_version"]),
            blocked_by_reason={str(k): int(v) for k, v in d.get("blocked_by_reason", {}).items()},
            duplicates_by_reason={str(k): int(v) for k, v in d.get("duplicates_by_reason", {}).items()},
            near_duplicates_published=int(d.get("near_duplicates_published", 0)),
            log_head_bound=LOG_HEAD in d or not d.get("log"),
            removed_windows=(str(d["removed_windows"]["path"]), str(d["removed_windows"]["sha256"]))
            if d.get("removed_windows") else None)

    # ------------------------------------------------------------------------------------------------ queries
    def files(self) -> tuple[ShardFile, ...]:
        """Every listed shard file: data files, then index files."""
        return self.shards + self.index

    def listed_paths(self) -> set[str]:
        """Relative paths of every file this manifest accounts for (shards, index, rejects, manifest)."""
        windows = {self.removed_windows[0]} if self.removed_windows else set()
        return {MANIFEST_NAME, self.rejects, *(f.path for f in self.files()), *windows}

    def shard_numbers(self) -> tuple[int, ...]:
        """Shards that hold images (those with an index file)."""
        return tuple(sorted({f.shard for f in self.index}))

    def key(self, shard: int) -> ShardKey:
        """The shard's key as listed: its generation is the one its index file names."""
        found = [f.path for f in self.index if f.shard == shard]
        return ShardKey(shard, self.num_shards, layout.generation_of(found[0]) if found else 0)

    # ------------------------------------------------------------------------------------------------ releases
    @classmethod
    def for_build(cls, *, created: str, num_shards: int, formats: Sequence[str], files: Sequence[ShardFile],
                  counts: Counts, rejects_by_reason: Mapping[str, int], config: dict[str, Any],
                  models: dict[str, Any], release: int = 1, log: Sequence[LogEntry] = (),
                  rejects: str = layout.REJECTS_NAME,
                  blocked_by_reason: Mapping[str, int] | None = None,
                  duplicates_by_reason: Mapping[str, int] | None = None,
                  near_duplicates_published: int = 0) -> "Manifest":
        """The release a build makes: 1, or the next one of the release it replaces (``release``), keeping that
        release's takedown ``log``. Raises RuntimeError when the counts do not add up (a bug, never data)."""
        files = sorted(files, key=lambda f: (f.format, f.shard))
        index = tuple(f for f in files if f.format == INDEX)
        if counts.published != sum(f.images for f in index) or not counts.conserved():
            raise RuntimeError(f"count conservation violated: {counts.to_dict()}")
        if duplicates_by_reason and sum(duplicates_by_reason.values()) != counts.duplicates:
            raise RuntimeError(f"duplicates by reason {dict(duplicates_by_reason)} do not add up to {counts.duplicates}")
        return cls(release=release, created=created, num_shards=num_shards, formats=tuple(formats), counts=counts,
                   rejects_by_reason=dict(sorted(rejects_by_reason.items())),
                   shards=tuple(f for f in files if f.format != INDEX), index=index, config=config,
                   models=models, log=tuple(log), rejects=rejects,
                   blocked_by_reason=dict(sorted((blocked_by_reason or {}).items())),
                   duplicates_by_reason=dict(sorted((duplicates_by_reason or {}).items())),
                   near_duplicates_published=near_duplicates_published)

    def after_takedown(self, *, touched: set[int], rewritten: Sequence[ShardFile], removed: int,
                       entries: Sequence[LogEntry]) -> "Manifest":
        """Release N+1: the files of the ``touched`` shards replaced by their ``rewritten`` versions (written
        under the new release's generation; a shard with no rewritten files is gone), ``removed`` images moved
        from published to removed, ``entries`` appended to the log."""
        def update(files: tuple[ShardFile, ...], of_index: bool) -> tuple[ShardFile, ...]:
            kept = [f for f in files if f.shard not in touched]
            new = [f for f in rewritten if (f.format == INDEX) == of_index]
            return tuple(sorted(kept + new, key=lambda f: (f.format, f.shard)))

        counts = replace(self.counts, published=self.counts.published - removed,
                         removed=(self.counts.removed or 0) + removed)
        return replace(self, release=self.release + 1, counts=counts, shards=update(self.shards, False),
                       index=update(self.index, True), log=self.log + tuple(entries), log_head_bound=True)


def log_head(log: Sequence[LogEntry]) -> str:
    """``log_head_sha256``: the sha256 of the log's last entry (``release.log.entry_sha256``), written next to the
    log so that the chain's head is bound too: the entries' ``prev_sha256`` bind every entry but the last."""
    return entry_sha256(log[-1].to_dict())


def _check_version(d: Mapping[str, Any], where: str) -> None:
    if d.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{where}: unsupported format_version {d.get('format_version')!r}")


def path(release_dir: str) -> str:
    return storage.join(release_dir, MANIFEST_NAME)


def load_manifest(release_dir: str) -> dict[str, Any]:
    """The manifest as a plain dict (format version checked, nothing else): for readers that report problems."""
    where = path(release_dir)
    try:
        data = storage.read(where)
    except FileNotFoundError:
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {release_dir!r}: not a veilset release") from None
    manifest = json.loads(data)
    _check_version(manifest, where)
    return manifest


def read(release_dir: str) -> Manifest:
    """The manifest of the release in ``release_dir``."""
    return Manifest.from_dict(load_manifest(release_dir))


def write(release_dir: str, manifest: Manifest) -> None:
    """Write ``release_dir/manifest.json`` atomically (the build's last step; a takedown's commit point stages
    it in its work folder and renames it over the old one)."""
    storage.atomic_write(path(release_dir), manifest.to_bytes())


def swap_in(stage_dir: str, release_dir: str) -> bool:
    """The commit of a release change: rename the manifest staged (``write(stage_dir, ...)``) over the release's,
    atomically. False when nothing is staged (already swapped: reruns are idempotent)."""
    staged = path(stage_dir)
    if not storage.exists(staged):
        return False
    storage.move(staged, path(release_dir))
    storage.fsync_dir(release_dir)
    return True
