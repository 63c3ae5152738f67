"""Integrity: the manifest's files exist with their sha256 and image counts, nothing unlisted is published,
the index and every shard format agree image by image, and the counts add up."""
from __future__ import annotations

import io
import json
import os
from collections import Counter
from typing import Any

from veilset.plugins import Plugin
from veilset.audit.findings import INTEGRITY, CheckResult, Finding
from veilset.audit.release import INDEX, Release, ReleaseReadError
from veilset.release import fingerprint, ids, layout, registry
from veilset.release.log import chain_problems, entry_sha256
from veilset.release.layout import MANIFEST_NAME, image_id_of_name
from veilset.release.manifest import LOG_HEAD as HEAD_KEY
from veilset.release.sa1b import string_id
from veilset.release.storage import TMP_MARK

COUNT_KEYS = ("published", "rejected", "duplicates", "blocked", "removed")


def shard_formats() -> tuple[str, ...]:
    """Formats a manifest may name (the registry's selectable ones: a new format is audited as it registers)."""
    return registry.selectable()


def listed_formats() -> tuple[str, ...]:
    """Formats whose files the manifest lists in ``shards``."""
    return tuple(f.name for f in registry.all_formats() if f.listed)


def _f(file: str, image_id: str, message: str) -> Finding:
    return Finding(check=INTEGRITY, file=file, image_id=image_id, message=message)


def check_integrity(release: Release) -> CheckResult:
    findings: list[Finding] = []
    m = release.manifest
    if release.num_shards < 1:
        findings.append(_f(MANIFEST_NAME, "", f"num_shards must be >= 1, got {m.get('num_shards')!r}"))
        return CheckResult.from_findings(INTEGRITY, findings, "manifest unusable")
    unknown = [f for f in release.formats if f not in shard_formats()]
    if unknown or not release.formats:
        findings.append(_f(MANIFEST_NAME, "", f"formats {list(release.formats)!r}: unknown or empty"))

    counts_per_format = _check_listed_files(release, findings)
    index_by_id = _check_index(release, findings)
    _check_formats_agree(release, index_by_id, findings)
    _check_copies(release, index_by_id, findings)
    _check_counts(release, index_by_id, counts_per_format, findings)
    _check_unlisted(release, index_by_id, findings)
    log_note = _check_log_chain(m, findings)
    stats = {"files": len(release.all_files()), "images": len(index_by_id),
             "shard_files": len(m.get("shards", [])) + len(m.get("index", [])), "log_entries": len(m.get("log", []))}
    return CheckResult.from_findings(
        INTEGRITY, findings, f"{stats['shard_files']} listed shard files, {stats['images']} images, "
                             f"{stats['files']} files on disk; {log_note}", stats)


def _check_log_chain(m: dict[str, Any], findings: list[Finding]) -> str:
    """Each release-log entry links to the one before by hash (``release.log.chain_problems``). Entries written
    before chaining are information, not findings. Returns the note for the check's message."""
    log = m.get("log", [])
    if not isinstance(log, list) or not all(isinstance(e, dict) for e in log):
        findings.append(_f(MANIFEST_NAME, "", "log is not a list of entries"))
        return "log unreadable"
    problems, unchained = chain_problems(log)
    findings.extend(_f(MANIFEST_NAME, "", p) for p in problems)
    head = _check_log_head(m, log, findings)
    if not log:
        return "no takedown log"
    if unchained:
        return f"log not chained (written before chaining): {unchained} of {len(log)} entries; {head}"
    return f"log chained ({len(log)} entries); {head}"


def _check_log_head(m: dict[str, Any], log: list[dict[str, Any]], findings: list[Finding]) -> str:
    """The manifest's ``log_head_sha256`` must be the sha256 of the log's last entry: the chain's links bind every
    entry but the last, this binds the last one. Manifests written before the field: a note, not a finding."""
    if HEAD_KEY not in m:
        return f"log head not bound (manifest written before {HEAD_KEY})" if log else "no log head"
    want = entry_sha256(log[-1]) if log else None
    if m[HEAD_KEY] != want:
        what = f"the last log entry ({len(log) - 1}) hashes to {want}" if log else "the log is empty"
        findings.append(_f(MANIFEST_NAME, "", f"{HEAD_KEY} {m[HEAD_KEY]!r} but {what} (the last log entry was "
                                              f"edited, deleted or added without rewriting the manifest's head)"))
        return "log head does not match"
    return "log head bound" if log else "no log head"


# ---------------------------------------------------------------------------------------------- listed files
def _check_listed_files(release: Release, findings: list[Finding]) -> dict[str, int]:
    totals: dict[str, int] = {}
    seen_paths: set[str] = set()
    for fmt in (INDEX, *listed_formats()):
        entries = release.shard_entries(fmt)
        if fmt != INDEX and entries and fmt not in release.formats:
            findings.append(_f(entries[0].get("path", ""), "", f"{fmt} shards listed but {fmt} not in formats"))
        for e in entries:
            rel = str(e.get("path", ""))
            if rel in seen_paths:
                findings.append(_f(rel, "", "listed twice in the manifest"))
            seen_paths.add(rel)
            try:
                expected = release.expected_shard_path(fmt, int(e.get("shard", -1)))
            except (TypeError, ValueError):
                expected = None
            if rel != expected:
                findings.append(_f(rel, "", f"manifest entry shard={e.get('shard')!r} should be at {expected!r}"))
            try:
                data = release.read(rel)
            except ReleaseReadError as err:
                findings.append(_f(rel, "", f"listed in the manifest but missing ({err.message})"))
                continue
            actual = ids.sha256_hex(data)
            if actual != e.get("sha256"):
                findings.append(_f(rel, "", f"sha256 {actual} does not match the manifest's {e.get('sha256')}"))
            try:
                n = release.count_images(fmt, rel)
            except ReleaseReadError as err:
                findings.append(_f(rel, "", err.message))
                continue
            if n != e.get("images"):
                findings.append(_f(rel, "", f"holds {n} images, manifest says {e.get('images')!r}"))
            totals[fmt] = totals.get(fmt, 0) + n
    rejects = release.manifest.get("rejects")
    if rejects:
        try:
            release.read(rejects)
        except ReleaseReadError as err:
            findings.append(_f(rejects, "", f"rejects file listed but missing ({err.message})"))
    _check_removed_windows(release, findings)
    return totals


def _check_removed_windows(release: Release, findings: list[Finding]) -> None:
    """The takedowns' crop-window file (what keeps crops of removed images out of later builds): present, with
    the manifest's sha256."""
    windows = release.manifest.get("removed_windows")
    if not windows:
        return
    rel = str(windows.get("path", "")) if isinstance(windows, dict) else ""
    try:
        data = release.read(rel)
    except ReleaseReadError as err:
        findings.append(_f(rel or MANIFEST_NAME, "", f"removed_windows listed but missing ({err.message})"))
        return
    if ids.sha256_hex(data) != windows.get("sha256"):
        findings.append(_f(rel, "", f"sha256 {ids.sha256_hex(data)} does not match the manifest's removed_windows "
                                    f"{windows.get('sha256')}"))


# ---------------------------------------------------------------------------------------------- index
def _check_index(release: Release, findings: list[Finding]) -> dict[str, dict[str, Any]]:
    by_id: dict[str, dict[str, Any]] = {}
    for entry in release.shard_entries(INDEX):
        rel = entry.get("path", "")
        try:
            rows = release.index_rows(rel)
        except ReleaseReadError:
            continue  # reported by _check_listed_files
        ids_in_file = [r["image_id"] for r in rows]
        if ids_in_file != sorted(ids_in_file):
            findings.append(_f(rel, "", "index lines are not sorted by image_id"))
        for row in rows:
            iid = row["image_id"]
            if not ids.is_valid_image_id(iid):
                findings.append(_f(rel, str(iid), "invalid image ID"))
                continue
            if iid in by_id:
                findings.append(_f(rel, iid, f"image listed twice (also in {by_id[iid]['_file']})"))
                continue
            by_id[iid] = dict(row, _file=rel)
            shard = ids.shard_of(iid, release.num_shards)
            if row.get("shard") != shard or entry.get("shard") != shard:
                findings.append(_f(rel, iid, f"belongs to shard {shard}, found in shard {entry.get('shard')} "
                                             f"(line says {row.get('shard')!r})"))
            csha = row.get("content_sha256")
            if not isinstance(csha, str) or len(csha) != 64 or ids.image_id_for(csha) != iid:
                findings.append(_f(rel, iid, f"image ID is not derived from content_sha256 {csha!r}"))
            generation = layout.generation_of(rel)
            want_name = layout.image_path(iid, shard, generation) if registry.with_image_files(release.formats) \
                else None
            if row.get("file_name") != want_name:
                findings.append(_f(rel, iid, f"file_name {row.get('file_name')!r}, expected {want_name!r}"))
    return by_id


# ---------------------------------------------------------------------------------------------- formats agree
def _check_formats_agree(release: Release, index_by_id: dict[str, dict[str, Any]],
                         findings: list[Finding]) -> None:
    index_shards = {int(e["shard"]) for e in release.shard_entries(INDEX) if isinstance(e.get("shard"), int)}
    for fmt in release.formats:
        if fmt not in listed_formats():
            continue
        shards = {int(e["shard"]) for e in release.shard_entries(fmt) if isinstance(e.get("shard"), int)}
        for s in sorted(index_shards - shards):
            findings.append(_f(release.expected_shard_path(fmt, s), "", f"index has shard {s} but no {fmt} shard"))
        for s in sorted(shards - index_shards):
            findings.append(_f(release.expected_shard_path(fmt, s), "", f"{fmt} shard {s} has no index shard"))

    seen: dict[str, dict[str, list[str]]] = {}  # image_id -> fmt -> files
    per_file: dict[str, dict[Any, str]] = {}  # shard file -> integer id -> the image that uses it
    for rec in release.iter_records():
        fmt = _format_of(rec.file)
        if fmt == INDEX:
            continue
        iid = rec.image_id if isinstance(rec.image_id, str) else ""
        seen.setdefault(iid, {}).setdefault(fmt, []).append(rec.file)
        row = index_by_id.get(iid)
        if row is None:
            findings.append(_f(rec.file, iid, "image is in a shard but not in the index"))
            continue
        shard_file = rec.file.split(":", 1)[0]
        if shard_file != release.expected_shard_path(fmt, int(row["shard"])):
            findings.append(_f(rec.file, iid, f"image belongs in shard {row['shard']}"))
        for key, value in (("width", rec.width), ("height", rec.height), ("sha256", rec.sha256),
                           ("content_sha256", rec.content_sha256)):
            if value is not None and value != row.get(key):
                findings.append(_f(rec.file, iid, f"{key} {value!r} differs from the index's {row.get(key)!r}"))
        if rec.detections is not None:
            faces = sum(d.get("label") == "face" for d in rec.detections)
            plates = sum(d.get("label") == "license_plate" for d in rec.detections)
            if (faces, plates) != (row.get("num_faces"), row.get("num_plates")):
                findings.append(_f(rec.file, iid, f"{faces} faces / {plates} plates, index says "
                                                  f"{row.get('num_faces')} / {row.get('num_plates')}"))
        if len(rec.masks) != row.get("num_masks"):
            findings.append(_f(rec.file, iid, f"{len(rec.masks)} masks, index says {row.get('num_masks')}"))
        _check_mask_ids(rec.file, iid, rec.masks, per_file.setdefault(shard_file, {}), findings)
    for iid in index_by_id:
        for fmt in release.formats:
            if fmt in listed_formats() and fmt not in seen.get(iid, {}):
                findings.append(_f(release.expected_shard_path(fmt, int(index_by_id[iid]["shard"])), iid,
                                   f"image is in the index but missing from the {fmt} shard"))
    for iid, per_fmt in seen.items():
        for fmt, files in per_fmt.items():
            if len(files) > 1:
                findings.append(_f(files[1], iid, f"image appears {len(files)} times in {fmt}"))
    _check_coco_ids(release, findings)
    _check_tar_members(release, findings)


def _check_mask_ids(file: str, iid: str, masks: tuple[dict[str, Any], ...], used: dict[tuple[str, int], str],
                    findings: list[Finding]) -> None:
    """Mask/annotation ids are ``ids.annotation_id(image_id, k)`` (so below 2**53) and, with the image's integer
    id, unique within their shard file (``used``: ("image"|"annotation", integer) -> image ID, filled here)."""
    got = [a.get("id") for a in masks]
    if sorted(got, key=str) != sorted((ids.annotation_id(iid, k) for k in range(len(masks))), key=str):
        findings.append(_f(file, iid, "mask/annotation ids are not ids.annotation_id(image_id, k), k = 0, 1, ..."))
    twice = {a for a, n in Counter(a for a in got if isinstance(a, int)).items() if n > 1}
    keys = [("image", ids.int_id(iid))] + [("annotation", a) for a in dict.fromkeys(got) if isinstance(a, int)]
    for kind, value in keys:
        other = used.setdefault((kind, value), iid)
        if other != iid or (kind == "annotation" and value in twice):
            findings.append(_f(file, iid, f"{kind} id {value} is used twice in its shard file (also by {other})"))


def _format_of(file: str) -> str:
    return registry.format_of(file.split(":", 1)[0]) or file.split("/", 1)[0]


def _check_coco_ids(release: Release, findings: list[Finding]) -> None:
    for entry in release.shard_entries("coco"):
        rel = entry.get("path", "")
        try:
            doc = release.coco_doc(rel)
        except ReleaseReadError:
            continue
        int_ids = set()
        for img in doc["images"]:
            iid = img.get("image_id", "")
            if ids.is_valid_image_id(iid) and img.get("id") != ids.int_id(iid):
                findings.append(_f(rel, iid, f"COCO id {img.get('id')!r} is not ids.int_id(image_id) "
                                             f"= int(image_id[3:15], 16)"))
            if img.get("id") in int_ids:
                findings.append(_f(rel, str(iid), f"COCO image id {img.get('id')!r} used twice"))
            if ids.is_valid_image_id(iid) and img.get("file_name") != layout.image_path(
                    iid, entry.get("shard", -1), release.shard_generation(entry.get("shard", -1))):
                findings.append(_f(rel, iid, f"COCO file_name {img.get('file_name')!r} is not the images/ path"))
            int_ids.add(img.get("id"))
        for ann in doc.get("annotations", []):
            if ann.get("image_id") not in int_ids:
                findings.append(_f(rel, "", f"annotation {ann.get('id')!r} refers to unknown image "
                                            f"{ann.get('image_id')!r}"))


def _check_tar_members(release: Release, findings: list[Finding]) -> None:
    for entry in release.shard_entries("sa1b"):
        rel = entry.get("path", "")
        try:
            members = release.tar_members(rel)
        except ReleaseReadError:
            continue
        names = [n for n, _ in members]
        stems = Counter()
        for name in names:
            stem, dot, ext = name.rpartition(".")
            if not dot or ext not in ("jpg", "json") or not ids.is_valid_image_id(stem):
                findings.append(_f(f"{rel}:{name}", image_id_of_name(stem), "unexpected tar member"))
                continue
            stems[stem] += 1
        for stem, n in stems.items():
            if n != 2:
                findings.append(_f(rel, stem, "tar needs exactly one .jpg and one .json per image"))
        for name, data in members:
            if name.endswith(".json"):
                try:
                    meta = json.loads(data)
                    if string_id(meta["image"]) != name[:-5]:
                        findings.append(_f(f"{rel}:{name}", name[:-5], "JSON veilset_id differs from member name"))
                    elif meta["image"]["image_id"] != ids.int_id(name[:-5]):
                        findings.append(_f(f"{rel}:{name}", name[:-5], f"JSON image_id {meta['image']['image_id']!r}"
                                                                       f" is not ids.int_id of the member name"))
                except (ValueError, KeyError, TypeError) as err:
                    findings.append(_f(f"{rel}:{name}", name[:-5], f"unreadable SA-1B JSON: {err}"))


# ---------------------------------------------------------------------------------------------- image bytes
def _check_copies(release: Release, index_by_id: dict[str, dict[str, Any]], findings: list[Finding]) -> None:
    from PIL import Image

    fingerprinted: set[str] = set()
    for copy in release.iter_copies():
        row = index_by_id.get(copy.image_id)
        if row is None:
            findings.append(_f(copy.file, copy.image_id, "published JPEG of an image that is not in the index"))
            continue
        actual = ids.sha256_hex(copy.data)
        if actual != row.get("sha256"):
            findings.append(_f(copy.file, copy.image_id, f"JPEG sha256 {actual} differs from the index's "
                                                         f"{row.get('sha256')}"))
        try:
            with Image.open(io.BytesIO(copy.data)) as im:
                size = im.size
                fmt = im.format
        except Exception as err:  # PIL raises many types for bad data
            findings.append(_f(copy.file, copy.image_id, f"not a decodable image: {err}"))
            continue
        if fmt != "JPEG":
            findings.append(_f(copy.file, copy.image_id, f"published image is {fmt}, not JPEG"))
        if size != (row.get("width"), row.get("height")):
            findings.append(_f(copy.file, copy.image_id, f"JPEG is {size[0]}x{size[1]}, index says "
                                                         f"{row.get('width')}x{row.get('height')}"))
        findings.extend(_check_fingerprints(copy, row, fingerprinted))
    if registry.with_image_files(release.formats):
        on_disk = set(release.image_files())
        for iid, row in index_by_id.items():
            name = row.get("file_name")
            if name and name not in on_disk:
                findings.append(_f(name, iid, "published JPEG listed in the index is missing"))


# ---------------------------------------------------------------------------------------------- counts
def _check_fingerprints(copy: Any, row: dict[str, Any], done: set[str]) -> list[Finding]:
    """The index's ``pixels_sha256`` against every published copy's decoded pixels, and its ``pdq`` against the
    first copy of each image (PDQ is a function of the pixels: one check per image). Rows without them (releases
    built before they were recorded) are not checked."""
    want_pixels, want_pdq = row.get("pixels_sha256"), row.get("pdq")
    if not want_pixels and not want_pdq:
        return []
    try:
        pixels = fingerprint.decode_rgb(copy.data)
    except ValueError:
        return []  # reported as not decodable above
    out = []
    if want_pixels and fingerprint.pixels_sha256(pixels) != want_pixels:
        out.append(_f(copy.file, copy.image_id, f"decoded pixels differ from the index's pixels_sha256 {want_pixels}"))
    if want_pdq and copy.image_id not in done:
        done.add(copy.image_id)
        actual = fingerprint.pdq_hash(pixels)[0].hex()
        if actual != want_pdq:
            out.append(_f(copy.file, copy.image_id, f"PDQ hash {actual} differs from the index's {want_pdq}"))
    return out


def _check_counts(release: Release, index_by_id: dict[str, dict[str, Any]], per_format: dict[str, int],
                  findings: list[Finding]) -> None:
    m = release.manifest
    counts = m.get("counts") or {}
    try:
        parts = {k: int(counts.get(k, 0)) for k in COUNT_KEYS}
        total = int(counts["input"])
    except (KeyError, TypeError, ValueError):
        findings.append(_f(MANIFEST_NAME, "", f"counts incomplete: {counts!r}"))
        return
    if sum(parts.values()) != total:
        findings.append(_f(MANIFEST_NAME, "", "counts do not add up: input {} != {}".format(
            total, " + ".join(f"{k} {v}" for k, v in parts.items()))))
    if parts["published"] != len(index_by_id):
        findings.append(_f(MANIFEST_NAME, "", f"counts.published {parts['published']} but the index lists "
                                              f"{len(index_by_id)} images"))
    for fmt in release.formats:
        if fmt in listed_formats() and fmt in per_format and per_format[fmt] != parts["published"]:
            findings.append(_f(MANIFEST_NAME, "", f"{fmt} shards hold {per_format[fmt]} images, counts.published "
                                                  f"is {parts['published']}"))
    removed_logged = sum(len(e.get("removed", [])) for e in m.get("log", []))
    if removed_logged != parts["removed"]:
        findings.append(_f(MANIFEST_NAME, "", f"log removes {removed_logged} images, counts.removed is "
                                              f"{parts['removed']}"))
    rejects = m.get("rejects")
    if rejects:
        try:
            lines = [ln for ln in release.read(rejects).decode("utf-8", "replace").splitlines() if ln.strip()]
        except ReleaseReadError:
            return
        tally: Counter[str] = Counter()
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                tally[f"{rec['stage']}:{rec['reason']}"] += 1
            except (ValueError, KeyError, TypeError):
                findings.append(_f(rejects, "", f"line {n} is not a reject record"))
        by_reason = {k: int(v) for k, v in (m.get("rejects_by_reason") or {}).items()}
        if dict(tally) != by_reason:
            findings.append(_f(rejects, "", f"rejects by reason {dict(sorted(tally.items()))} differ from the "
                                            f"manifest's {by_reason}"))
        if sum(by_reason.values()) != parts["rejected"]:
            findings.append(_f(MANIFEST_NAME, "", f"rejects_by_reason sums to {sum(by_reason.values())}, "
                                                  f"counts.rejected is {parts['rejected']}"))


# ---------------------------------------------------------------------------------------------- unlisted
def _check_unlisted(release: Release, index_by_id: dict[str, dict[str, Any]], findings: list[Finding]) -> None:
    allowed = release.listed_files() | {r.get("file_name") for r in index_by_id.values() if r.get("file_name")}
    writer = interrupted_writer(release.root)
    left: list[str] = []
    for rel in release.all_files():
        if rel in allowed:
            continue
        if writer and (layout.is_scratch(rel) or layout.is_generation_file(rel) or TMP_MARK in rel):
            left.append(rel)  # the interrupted writer's: reported once, below
            continue
        name = rel.rsplit("/", 1)[-1]
        why = "temporary file left behind" if TMP_MARK in name else "file not listed in the manifest or index"
        findings.append(_f(rel, image_id_of_name(rel) if ids.is_valid_image_id(image_id_of_name(rel)) else "",
                           why))
    if writer:
        findings.append(_f(writer[0], "", f"an interrupted {writer[1]} left {len(left)} files; the release as "
                                          f"listed is whole: rerun the same command to finish ({writer[1]})"))


def interrupted_writer(root: str) -> tuple[str, str] | None:
    """(journal path, what) when a build or takedown apply was interrupted in this folder (its journal is there)."""
    for journal, what in ((layout.BUILD_JOURNAL, "veilset build"), (layout.TAKEDOWN_JOURNAL, "veilset takedown apply"),
                          (layout.TAKEDOWN_DIR, "veilset takedown apply"),
                          (layout.LOCK_NAME, "writer (build or takedown apply)")):
        if os.path.exists(os.path.join(root, journal)):
            return journal, what
    return None


PLUGIN = Plugin("audit check", INTEGRITY, lambda ctx: check_integrity(ctx.release),
                summary="every listed file is there with its hash; formats, index and counts agree")
