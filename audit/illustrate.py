"""A picture for every finding in the report, from published pixels only (what the release folder holds, never
the source photos).

The anonymization and residual checks crop the flagged area themselves (pixelated). Every other finding that
names an image gets one here: a finding with a box (a mask's) a crop of that box, an image-level finding
(integrity, metadata, takedowns) a thumbnail of the whole published image: the copy the finding names, else any
copy the release lists for the image. A finding without an image (release-wide), or whose image has no copy that
decodes, keeps none: the report says "no image".
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from veilset.audit.findings import CheckResult, Finding
from veilset.audit.imaging import box_thumbnail, decode_rgb, image_thumbnail
from veilset.audit.release import Release, ReleaseReadError
from veilset.release import registry
from veilset.release.format import FormatError

NO_IMAGE = "no image"  # what the report shows for a finding without a picture


def illustrate(release: Release, results: Sequence[CheckResult]) -> tuple[CheckResult, ...]:
    """``results`` with a thumbnail on every finding that names an image and has none yet."""
    wanted = {f.image_id for r in results for f in r.findings if f.image_id and f.thumbnail_png is None}
    listed = {i: list(copies) for i, copies in release.iter_copies_of(sorted(wanted))} if wanted else {}
    cache: dict[tuple[str, str], Any] = {}
    return tuple(dataclasses.replace(r, findings=tuple(_with_picture(release, f, listed, cache) for f in r.findings))
                 if r.findings else r for r in results)


def _with_picture(release: Release, finding: Finding, listed: dict[str, list[Any]],
                  cache: dict[tuple[str, str], Any]) -> Finding:
    if finding.thumbnail_png is not None or not finding.image_id:
        return finding
    key = (finding.image_id, finding.file)
    if key not in cache:
        cache[key] = _pixels(release, finding, listed.get(finding.image_id, []))
    pixels = cache[key]
    if pixels is None:
        return finding
    png = box_thumbnail(pixels, finding.box_xyxy) if finding.box_xyxy is not None else image_thumbnail(pixels)
    return dataclasses.replace(finding, thumbnail_png=png)


def _pixels(release: Release, finding: Finding, copies: list[Any]) -> Any:
    """The published pixels the finding is about: the named file's copy of the image (listed or not), else the
    first listed copy that decodes; None when there is none."""
    named = [c for c in copies if c.file == finding.file] or _copies_in_file(release, finding)
    for copy in named + [c for c in copies if c not in named]:
        try:
            return decode_rgb(copy.data)
        except Exception:  # noqa: BLE001 - an undecodable copy is a finding of its own
            continue
    return None


def _copies_in_file(release: Release, finding: Finding) -> list[Any]:
    """The image's copies in the file the finding names, when a release format holds JPEGs there (an unlisted
    images/ file, a listed shard that the index does not point to)."""
    fmt = next((f for f in registry.all_formats() if f.holds_jpegs and f.owns(finding.file)), None)
    if fmt is None or finding.file not in release.all_files():
        return []
    try:
        return list(fmt.copies(finding.file, release.read(finding.file), frozenset({finding.image_id})))
    except (ReleaseReadError, FormatError, ValueError, OSError):
        return []
