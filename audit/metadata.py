"""Metadata: no published JPEG carries APPn segments (EXIF, GPS, XMP, ICC, IPTC, JFIF thumbnails), COM
comments or bytes after EOI. The marker segments are parsed here, byte by byte, instead of trusting a
library's summary (Pillow hides segments it does not understand)."""
from __future__ import annotations

from dataclasses import dataclass

from veilset.plugins import Plugin
from veilset.audit.findings import METADATA, CheckResult, Finding
from veilset.audit.release import Release

SOI, EOI, SOS, COM = 0xD8, 0xD9, 0xDA, 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: no length field


class JpegParseError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    """One marker segment: ``marker`` (0xE1 for APP1 ...), ``offset`` of its 0xFF, ``payload`` bytes."""

    marker: int
    offset: int
    payload: bytes

    @property
    def name(self) -> str:
        if 0xE0 <= self.marker <= 0xEF:
            return f"APP{self.marker - 0xE0}"
        if self.marker == COM:
            return "COM"
        return f"0x{self.marker:02X}"


def parse_segments(data: bytes) -> tuple[list[Segment], int]:
    """All marker segments up to EOI and the number of bytes that follow EOI.

    Entropy-coded data after each SOS is skipped (0xFF00 stuffing and RSTn markers stay inside it).
    """
    if data[:2] != b"\xff\xd8":
        raise JpegParseError("does not start with SOI (FFD8)")
    segments: list[Segment] = []
    pos, n = 2, len(data)
    while True:
        if pos >= n:
            raise JpegParseError("ends before EOI")
        if data[pos] != 0xFF:
            raise JpegParseError(f"expected a marker at byte {pos}, got 0x{data[pos]:02X}")
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise JpegParseError("ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker == EOI:
            return segments, n - pos
        if marker in _STANDALONE or marker == SOI:
            segments.append(Segment(marker, start, b""))
            continue
        if pos + 2 > n:
            raise JpegParseError(f"segment 0x{marker:02X} at byte {start} is truncated")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > n:
            raise JpegParseError(f"segment 0x{marker:02X} at byte {start} has bad length {length}")
        segments.append(Segment(marker, start, data[pos + 2 : pos + length]))
        pos += length
        if marker == SOS:
            while True:  # entropy-coded data ends at a marker that is neither stuffing nor RSTn
                nxt = data.find(b"\xff", pos)
                if nxt < 0 or nxt + 1 >= n:
                    raise JpegParseError("entropy-coded data runs past the end of the file")
                following = data[nxt + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos = nxt + 1 if following == 0xFF else nxt + 2
                    continue
                pos = nxt
                break


def describe(segment: Segment) -> str:
    """What a metadata segment is, from its identifier string."""
    p = segment.payload
    kinds = ((b"Exif\x00", "EXIF"), (b"http://ns.adobe.com/xap", "XMP"), (b"http://ns.adobe.com/xmp", "XMP"),
             (b"JFIF\x00", "JFIF header"), (b"JFXX\x00", "JFIF thumbnail"), (b"ICC_PROFILE", "ICC profile"),
             (b"Photoshop 3.0", "IPTC/Photoshop"), (b"Adobe", "Adobe"), (b"MPF", "multi-picture"),
             (b"FPXR", "FlashPix"))
    if segment.marker == COM:
        return "comment"
    for prefix, kind in kinds:
        if p.startswith(prefix):
            if kind == "EXIF" and b"\x88\x25" in p[:4096] or kind == "EXIF" and b"\x25\x88" in p[:4096]:
                return "EXIF (GPS pointer)"
            return kind
    return "unknown application data"


def metadata_segments(data: bytes) -> list[Segment]:
    segments, _ = parse_segments(data)
    return [s for s in segments if 0xE0 <= s.marker <= 0xEF or s.marker == COM]


def jpeg_metadata_problems(data: bytes) -> list[str]:
    """Human-readable problems of one JPEG; empty when it is clean."""
    try:
        segments, trailing = parse_segments(data)
    except JpegParseError as err:
        return [f"JPEG structure unreadable: {err}"]
    problems = [f"{s.name} segment at byte {s.offset} ({describe(s)}, {len(s.payload)} bytes)"
                for s in segments if 0xE0 <= s.marker <= 0xEF or s.marker == COM]
    if sum(s.marker == SOI for s in segments):
        problems.append("a second SOI inside the image (embedded picture)")
    if trailing:
        problems.append(f"{trailing} bytes after EOI")
    return problems


def check_metadata(release: Release) -> CheckResult:
    findings: list[Finding] = []
    checked = 0
    for copy in release.iter_copies():
        checked += 1
        for problem in jpeg_metadata_problems(copy.data):
            findings.append(Finding(check=METADATA, file=copy.file, image_id=copy.image_id, message=problem))
    return CheckResult.from_findings(METADATA, findings,
                                     f"{checked} published JPEGs parsed (Parquet, images/, tar members)",
                                     {"jpegs": checked})


PLUGIN = Plugin("audit check", METADATA, lambda ctx: check_metadata(ctx.release),
                summary="published JPEGs carry no EXIF/XMP/ICC/comments or other metadata")
