"""Metadata: every published copy of every image (Parquet image bytes, images/ files, SA-1B tar members) must
pass the strict rule the build enforces, ``veilset.release.jpeg.strict_violations``: SOI, at most a bare JFIF
APP0, DQT/SOFn/DHT/DRI, one scan, EOI as the last bytes. Anything else is a finding: APPn segments (EXIF, GPS,
XMP, ICC, IPTC, JFIF thumbnails), COM comments, DNL or unknown markers, bytes between segments, bytes after EOI.
The bytes themselves are parsed (a decoder silently skips what it does not understand); the audit and the build
share one rule, so a release the build would refuse to write is one the audit fails."""
from __future__ import annotations

import re

from veilset.plugins import Plugin
from veilset.audit.findings import METADATA, CheckResult, Finding
from veilset.audit.release import Release
from veilset.release import jpeg

_AT_OFFSET = re.compile(r"^(\S+) segment at offset (\d+) ")


def describe(marker: int, payload: bytes) -> str:
    """What a metadata segment is, from its identifier string."""
    kinds = ((b"Exif\x00", "EXIF"), (b"http://ns.adobe.com/xap", "XMP"), (b"http://ns.adobe.com/xmp", "XMP"),
             (b"JFIF\x00", "JFIF header"), (b"JFXX\x00", "JFIF thumbnail"), (b"ICC_PROFILE", "ICC profile"),
             (b"Photoshop 3.0", "IPTC/Photoshop"), (b"Adobe", "Adobe"), (b"MPF", "multi-picture"),
             (b"FPXR", "FlashPix"))
    if marker == jpeg.COM:
        return "comment"
    if marker == 0xDC:
        return "DNL: number of lines"
    if not jpeg.APP0 <= marker <= jpeg.APP15:
        return "unknown marker"
    for prefix, kind in kinds:
        if payload.startswith(prefix):
            if kind == "EXIF" and (b"\x88\x25" in payload[:4096] or b"\x25\x88" in payload[:4096]):
                return "EXIF (GPS pointer)"
            return kind
    return "unknown application data"


def jpeg_metadata_problems(data: bytes) -> list[str]:
    """Why one published JPEG breaks the strict rule (empty: it is clean), each header segment named by kind."""
    problems = jpeg.strict_violations(data)
    if not problems:
        return []
    try:
        by_offset = {s.offset: s for s in jpeg.iter_segments(bytes(data))}
    except ValueError:
        return problems
    out = []
    for problem in problems:
        match = _AT_OFFSET.match(problem)
        seg = by_offset.get(int(match.group(2))) if match else None
        if seg is not None and seg.marker not in (jpeg.SOS, *jpeg.SOF_MARKERS) and "not allowed" in problem:
            payload = seg.payload(data)
            problem = f"{problem} ({describe(seg.marker, payload)}, {len(payload)} bytes)"
        out.append(problem)
    return out


def check_metadata(release: Release) -> CheckResult:
    findings: list[Finding] = []
    checked = 0
    for copy in release.iter_copies():
        checked += 1
        for problem in jpeg_metadata_problems(copy.data):
            findings.append(Finding(check=METADATA, file=copy.file, image_id=copy.image_id, message=problem))
    return CheckResult.from_findings(METADATA, findings,
                                     f"{checked} published JPEGs checked against the build's strict JPEG rule "
                                     "(Parquet, images/, tar members)", {"jpegs": checked})


PLUGIN = Plugin("audit check", METADATA, lambda ctx: check_metadata(ctx.release),
                summary="every published JPEG copy passes the build's strict rule (no APPn but a bare JFIF, "
                        "no COM/DNL/unknown markers, no bytes between segments or after EOI)")
