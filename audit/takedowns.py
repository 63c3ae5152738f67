"""Takedowns honoured: no image ID and no content hash that was removed (ledger blocklist + the manifest's
own takedown log) appears anywhere in the release: Parquet rows, COCO images/annotations, tar members, index
lines, file names, and the raw bytes of every other file."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

from veilset.audit.findings import TAKEDOWNS, CheckResult, Finding
from veilset.plugins import Arg, Args, Plugin
from veilset.audit.release import Release, ReleaseReadError
from veilset.release import ids
from veilset.release.layout import MANIFEST_NAME

_HEX_RUN = re.compile(rb"[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class Blocklist:
    image_ids: frozenset[str]
    content_hashes: frozenset[str]  # source and published sha256 hex of removed images
    source: str  # where it came from, for the report

    @property
    def id_hexes(self) -> dict[str, str]:
        return {i[len(ids.ID_PREFIX):]: i for i in self.image_ids}

    @property
    def coco_int_ids(self) -> dict[int, str]:
        return {ids.int_id(i): i for i in self.image_ids if ids.is_valid_image_id(i)}


@dataclass(frozen=True)
class LedgerSnapshot:
    """What the audit reads from the takedown ledger, handed over as data by the front door (``veilset.api``
    reads the ledger; the audit never imports the takedown room)."""

    image_ids: frozenset[str]
    content_hashes: frozenset[str]  # source and published sha256 hex of removed images
    history: tuple[dict[str, Any], ...] = ()  # append-only state changes, oldest first


def load_blocklist(release: Release, ledger: LedgerSnapshot | None) -> Blocklist:
    image_ids: set[str] = set()
    hashes: set[str] = set()
    sources = []
    if ledger is not None:
        image_ids |= set(ledger.image_ids)
        hashes |= {h.lower() for h in ledger.content_hashes}
        sources.append("ledger")
    logged = {i for entry in release.manifest.get("log", []) for key in ("removed", "not_found")
              for i in entry.get(key) or []}
    if logged:
        sources.append("manifest log")
    image_ids |= logged
    return Blocklist(frozenset(image_ids), frozenset(hashes), " + ".join(sources) or "none")


def _hits_in_bytes(data: bytes, block: Blocklist) -> list[str]:
    """Blocked IDs/hashes found in raw bytes (any hex run whose first 32 chars are a blocked ID's hex, or that
    equals a blocked sha256)."""
    id_hexes = block.id_hexes
    out = []
    for m in _HEX_RUN.finditer(data):
        run = m.group().decode().lower()
        for start in range(0, len(run) - 31):
            if run[start : start + 32] in id_hexes:
                out.append(id_hexes[run[start : start + 32]])
                break
            if run[start : start + 64] in block.content_hashes:
                out.append(f"content hash {run[start:start + 64]}")
                break
    return sorted(set(out))


def _strip_manifest_log(data: bytes) -> bytes:
    """The manifest with the takedown log's ``removed`` lists blanked: that log is where removals are meant to
    be recorded; every other mention is a leak."""
    try:
        manifest = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data
    for entry in manifest.get("log", []):
        entry["removed"], entry["not_found"] = [], []
        entry.pop("near_duplicates", None)  # removed near-duplicates (their IDs are in ``removed`` too)
    return json.dumps(manifest).encode()


def _walk_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _walk_strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _walk_strings(v)


def _owns_its_id(img: dict[str, Any], block: Blocklist) -> bool:
    """A COCO image entry of a published (not removed) image whose integer id is its own ``ids.int_id``."""
    iid = img.get("image_id")
    return ids.is_valid_image_id(iid) and iid not in block.image_ids and img.get("id") == ids.int_id(iid)


def _log_vs_ledger(release: Release, ledger: LedgerSnapshot | None) -> list[Finding]:
    """With a ledger: every ID the release log says was removed is one the ledger removed (a log entry the
    ledger cannot account for was written or edited outside ``veilset takedown apply``). That every ledger-
    removed ID is absent from the release is the rest of this check."""
    if ledger is None:
        return []
    out = []
    for n, entry in enumerate(release.manifest.get("log", [])):
        removed = (entry.get("removed") or []) if isinstance(entry, dict) else []
        for image_id in removed:
            if image_id not in ledger.image_ids:
                out.append(Finding(check=TAKEDOWNS, file=MANIFEST_NAME, image_id=str(image_id),
                                   message=f"log entry {n} says this image was removed; the ledger has no "
                                           "removal of it"))
    return out


def check_takedowns(release: Release, ledger: LedgerSnapshot | None) -> CheckResult:
    block = load_blocklist(release, ledger)
    if not block.image_ids and not block.content_hashes:
        return CheckResult.from_findings(TAKEDOWNS, [], f"nothing was taken down ({block.source})",
                                         {"blocked_ids": 0, "blocked_hashes": 0})
    findings: list[Finding] = []

    def add(file: str, image_id: str, message: str) -> None:
        findings.append(Finding(check=TAKEDOWNS, file=file, image_id=image_id, message=message))

    # 1. structured: every per-image record, every published copy (by ID, by computed hash)
    for rec in release.iter_records():
        if rec.image_id in block.image_ids:
            add(rec.file, rec.image_id, "removed image ID is published again")
        for key, value in (("sha256", rec.sha256), ("content_sha256", rec.content_sha256)):
            if isinstance(value, str) and value.lower() in block.content_hashes:
                add(rec.file, rec.image_id, f"{key} {value} is a removed image's hash")
    for copy in release.iter_copies():
        digest = ids.sha256_hex(copy.data)
        if digest in block.content_hashes:
            add(copy.file, copy.image_id, f"published JPEG bytes hash to a removed image ({digest})")
    coco_ints = block.coco_int_ids
    for entry in release.shard_entries("coco"):
        try:
            doc = release.coco_doc(entry["path"])
        except ReleaseReadError:
            continue
        # an integer may be a removed image's and also, legitimately, that of another image (``ids.clashes``)
        owned = {img.get("id") for img in doc["images"] if _owns_its_id(img, block)}
        for img in doc["images"]:
            if img.get("id") in coco_ints and img.get("id") not in owned:
                add(entry["path"], coco_ints[img["id"]], f"COCO image id {img['id']} is a removed image's")
        for ann in doc.get("annotations", []):
            if ann.get("image_id") in coco_ints and ann.get("image_id") not in owned:
                add(entry["path"], coco_ints[ann["image_id"]],
                    f"COCO annotation {ann.get('id')} belongs to a removed image")

    # 2. names and raw bytes of every file; Parquet is compressed, so its decoded values are scanned too
    for rel in release.all_files():
        for hit in _hits_in_bytes(rel.encode(), block):
            add(rel, hit if hit.startswith(ids.ID_PREFIX) else "", f"file name mentions {hit}")
        try:
            data = release.read(rel)
        except ReleaseReadError:
            continue
        if rel == MANIFEST_NAME:
            data = _strip_manifest_log(data)
        for hit in _hits_in_bytes(data, block):
            add(rel, hit if hit.startswith(ids.ID_PREFIX) else "", f"file bytes mention {hit}")
        if rel.endswith(".parquet"):
            try:  # every column but the JPEG bytes (those are checked by hash above)
                import pyarrow.parquet as pq

                names = [n for n in pq.ParquetFile(release.path(rel)).schema_arrow.names if n != "image"]
                rows = release.parquet_rows(rel, columns=names + ["image.path"])
            except ReleaseReadError:
                continue
            except Exception:  # a damaged footer: integrity reports it
                continue
            text = "\n".join(s for row in rows for s in _walk_strings(row))
            for hit in _hits_in_bytes(text.encode(), block):
                add(rel, hit if hit.startswith(ids.ID_PREFIX) else "", f"Parquet values mention {hit}")
        elif rel.endswith(".tar"):
            try:
                members = release.tar_members(rel)
            except ReleaseReadError:
                continue
            for name, _ in members:
                for hit in _hits_in_bytes(name.encode(), block):
                    add(f"{rel}:{name}", hit if hit.startswith(ids.ID_PREFIX) else "", f"tar member named {hit}")
    findings += _log_vs_ledger(release, ledger)
    unique = list(dict.fromkeys(findings))  # one problem can be seen by several scans; keep each once
    return CheckResult.from_findings(
        TAKEDOWNS, unique, f"{len(block.image_ids)} removed IDs and {len(block.content_hashes)} hashes "
                           f"({block.source}) searched in {len(release.all_files())} files",
        {"blocked_ids": len(block.image_ids), "blocked_hashes": len(block.content_hashes)})


PLUGIN = Plugin("audit check", TAKEDOWNS, lambda ctx: check_takedowns(ctx.release, ctx.ledger),
                Args(Arg("ledger", "path", None, "takedown ledger: its removed IDs and hashes must be absent "
                                                 "(the manifest's takedown log is always checked)")),
                summary="no removed image ID or hash appears anywhere in the release")
