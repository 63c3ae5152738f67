"""Duplicates: what the manifest says about duplicate and blocked inputs adds up, and the release holds no copy it
says it dropped.

- ``duplicates_by_reason`` sums to ``counts.duplicates`` and ``blocked_by_reason`` to ``counts.blocked`` (each
  where the manifest lists it), with known reasons only.
- No two published images have the same pixels (``pixels_sha256``): the build publishes such sources once.
- ``near_duplicate_of`` (``--near-duplicates publish-all``) names a published image, or one the log removed; the
  rows carrying it are the manifest's ``near_duplicates_published`` (at most, once takedowns removed some).
- A ``publish-one`` build published no two near-copies of one photo: two unmarked published images whose PDQ
  hashes (the index's) are within ``fingerprint.MATCH_DISTANCE`` bits, both pictures PDQ can judge (quality >=
  ``MIN_QUALITY``, decoded from the release), is a finding. The build also groups turned and framed copies
  (``pipeline.near_duplicates``); this scan compares the hashes as published, an exact all-pairs Hamming scan.
"""
from __future__ import annotations

from typing import Any

from veilset.audit.findings import DUPLICATES, CheckResult, Finding
from veilset.audit.release import Release
from veilset.plugins import Plugin
from veilset.release import fingerprint
from veilset.release.layout import MANIFEST_NAME
from veilset.release.manifest import BLOCKED_REASONS, DUPLICATE_REASONS, PUBLISH_ONE


def _f(file: str, image_id: str, message: str) -> Finding:
    return Finding(check=DUPLICATES, file=file, image_id=image_id, message=message)


def check_duplicates(release: Release) -> CheckResult:
    m = release.manifest
    findings = _check_by_reason(m, "duplicates", DUPLICATE_REASONS) + _check_by_reason(m, "blocked", BLOCKED_REASONS)
    rows = [dict(row, _file=rel) for rel, row in release.all_index_rows()]  # unreadable files: integrity's
    findings += _same_pixels(rows)
    findings += _marked(m, rows)
    pairs = 0
    if (m.get("config") or {}).get("near_duplicates") == PUBLISH_ONE:
        near, pairs = _near_copies(release, rows)
        findings += near
    return CheckResult.from_findings(
        DUPLICATES, findings, f"{len(rows)} published images: counts by reason, same pixels, near_duplicate_of, "
                              f"{pairs} near pairs examined", {"images": len(rows), "near_pairs": pairs})


def _check_by_reason(m: dict[str, Any], count: str, reasons: tuple[str, ...]) -> list[Finding]:
    key = f"{count}_by_reason"
    if key not in m:
        return []
    by_reason = m.get(key)
    if not isinstance(by_reason, dict):
        return [_f(MANIFEST_NAME, "", f"{key} is not a mapping: {by_reason!r}")]
    out = [_f(MANIFEST_NAME, "", f"{key}: unknown reason {r!r}") for r in sorted(by_reason) if r not in reasons]
    total = sum(int(v) for v in by_reason.values() if isinstance(v, int))
    want = (m.get("counts") or {}).get(count)
    if total != want:
        out.append(_f(MANIFEST_NAME, "", f"{key} sums to {total}, counts.{count} is {want!r}"))
    return out


def _same_pixels(rows: list[dict[str, Any]]) -> list[Finding]:
    first: dict[str, str] = {}
    out = []
    for row in sorted(rows, key=lambda r: str(r.get("image_id"))):
        key = row.get("pixels_sha256")
        if not key:
            continue
        if key in first:
            out.append(_f(row["_file"], str(row.get("image_id")), f"the same published pixels as {first[key]}"))
        else:
            first[key] = str(row.get("image_id"))
    return out


def _marked(m: dict[str, Any], rows: list[dict[str, Any]]) -> list[Finding]:
    published = {str(r.get("image_id")) for r in rows}
    removed = {i for e in m.get("log", []) if isinstance(e, dict) for i in e.get("removed", []) or []}
    marked = [r for r in rows if r.get("near_duplicate_of")]
    out = [_f(r["_file"], str(r["image_id"]), f"near_duplicate_of {r['near_duplicate_of']!r}: not an image of this "
                                              f"release") for r in marked
           if r["near_duplicate_of"] not in published | removed or r["near_duplicate_of"] == r["image_id"]]
    said = int(m.get("near_duplicates_published", 0) or 0)
    if len(marked) > said or (len(marked) < said and not removed):
        out.append(_f(MANIFEST_NAME, "", f"{len(marked)} index rows carry near_duplicate_of, the manifest's "
                                         f"near_duplicates_published is {said}"))
    return out


def _near_copies(release: Release, rows: list[dict[str, Any]]) -> tuple[list[Finding], int]:
    """Unmarked published images within MATCH_DISTANCE of one another (each pair once), both of PDQ quality."""
    plain = sorted((r for r in rows if r.get("pdq") and not r.get("near_duplicate_of")),
                   key=lambda r: str(r["image_id"]))
    found = fingerprint.NearDuplicateIndex([r["image_id"] for r in plain], [r["pdq"] for r in plain])
    pairs = []
    for row in plain:
        for match in found.query(row["pdq"], fingerprint.MATCH_DISTANCE):
            if match.image_id > row["image_id"]:
                pairs.append((row, match))
    quality = _qualities(release, {r["image_id"] for r, _ in pairs} | {m.image_id for _, m in pairs})
    out = [_f(row["_file"], row["image_id"], f"a near-copy of {match.image_id} ({match.distance} bits) is published "
                                             f"too, in a publish-one release")
           for row, match in pairs
           if min(quality.get(row["image_id"], 0), quality.get(match.image_id, 0)) >= fingerprint.MIN_QUALITY]
    return out, len(pairs)


def _qualities(release: Release, image_ids: set[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for image_id, _copy, pixels in release.iter_decoded_copies(sorted(image_ids)):
        if image_id not in out:
            out[image_id] = fingerprint.pdq_hash(pixels)[1]
    return out


PLUGIN = Plugin("audit check", DUPLICATES, lambda ctx: check_duplicates(ctx.release),
                summary="duplicate and blocked counts add up by reason; no copy published that the build dropped")
