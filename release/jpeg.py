"""Hand-rolled JPEG marker-segment parser (pure; no PIL, no Beam).

Used by ``pipeline.encode`` (to drop every metadata segment), by its tests and by the compliance audit to
prove that a published JPEG carries no metadata: a parser that looks at the bytes themselves cannot be fooled
by a decoder that silently ignores a segment it does not understand.

Conventions: ``Segment.offset`` is the index of the segment's ``0xFF`` marker byte and ``Segment.length`` is
the number of bytes of the whole segment *including* the two marker bytes, so
``data[seg.offset:seg.offset + seg.length]`` is the complete segment. Stand-alone markers (SOI, EOI, RSTn,
TEM) have ``length == 2``.
"""
from __future__ import annotations

from dataclasses import dataclass

SOI = 0xD8
EOI = 0xD9
SOS = 0xDA
COM = 0xFE
APP0 = 0xE0
APP15 = 0xEF
# markers that have no length field
_STANDALONE = frozenset({0x01, SOI, EOI, *range(0xD0, 0xD8)})
# start-of-frame markers (0xC4 DHT, 0xC8 JPG and 0xCC DAC are not frames)
SOF_MARKERS = frozenset(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))
BASELINE_SOF = 0xC0
PROGRESSIVE_SOFS = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def marker_name(marker: int) -> str:
    """Conventional name of a JPEG marker byte (``0xE1`` -> ``"APP1"``)."""
    if APP0 <= marker <= APP15:
        return f"APP{marker - APP0}"
    if 0xD0 <= marker <= 0xD7:
        return f"RST{marker - 0xD0}"
    if marker in SOF_MARKERS:
        return f"SOF{marker - 0xC0}"
    if 0xF0 <= marker <= 0xFD:
        return f"JPG{marker - 0xF0}"
    named = {0x01: "TEM", 0xC4: "DHT", 0xC8: "JPG", 0xCC: "DAC", SOI: "SOI", EOI: "EOI", SOS: "SOS",
             0xDB: "DQT", 0xDC: "DNL", 0xDD: "DRI", 0xDE: "DHP", 0xDF: "EXP", COM: "COM"}
    return named.get(marker, f"0x{marker:02X}")


@dataclass(frozen=True)
class Segment:
    """One marker segment: ``data[offset:offset + length]`` is the whole segment, marker bytes included."""

    marker: int
    name: str
    offset: int
    length: int

    def payload(self, data: bytes) -> bytes:
        """The segment's bytes after the marker and the 2-byte length field (empty for stand-alone markers)."""
        if self.marker in _STANDALONE:
            return b""
        return bytes(data[self.offset + 4:self.offset + self.length])


@dataclass(frozen=True)
class FrameHeader:
    """The parsed SOFn segment."""

    marker: int
    precision: int
    height: int
    width: int
    component_ids: tuple[int, ...]
    sampling_hv: tuple[tuple[int, int], ...]  # (H, V) sampling factors per component

    @property
    def baseline(self) -> bool:
        return self.marker == BASELINE_SOF

    @property
    def progressive(self) -> bool:
        return self.marker in PROGRESSIVE_SOFS


def iter_segments(data: bytes) -> list[Segment]:
    """Every marker segment from SOI up to and including the first SOS (whose ``length`` is its header only).

    Raises ``ValueError`` when ``data`` is not a JPEG (no SOI), a segment runs past the end of the data, or
    garbage sits between segments.
    """
    data = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    n = len(data)
    if n < 2 or data[0] != 0xFF or data[1] != SOI:
        raise ValueError("not a JPEG: missing SOI marker (FF D8) at offset 0")
    segments = [Segment(SOI, "SOI", 0, 2)]
    pos = 2
    while True:
        if pos >= n:
            raise ValueError(f"truncated JPEG: no SOS marker before the end of the data ({n} bytes)")
        if data[pos] != 0xFF:
            raise ValueError(f"corrupt JPEG: expected a marker at offset {pos}, found byte 0x{data[pos]:02X}")
        start = pos
        while pos < n and data[pos] == 0xFF:  # fill bytes (B.1.1.2) may precede any marker
            pos += 1
        if pos >= n:
            raise ValueError(f"truncated JPEG: marker at offset {start} has no code byte")
        marker = data[pos]
        pos += 1
        offset = pos - 2  # the FF immediately preceding the code byte
        if marker == 0x00:
            raise ValueError(f"corrupt JPEG: stuffed byte FF 00 outside entropy-coded data at offset {offset}")
        if marker in _STANDALONE:
            if marker == SOI:
                raise ValueError(f"corrupt JPEG: second SOI marker at offset {offset}")
            if marker == EOI:
                raise ValueError(f"corrupt JPEG: EOI at offset {offset} before any SOS")
            segments.append(Segment(marker, marker_name(marker), offset, 2))
            continue
        if pos + 2 > n:
            raise ValueError(f"truncated JPEG: {marker_name(marker)} at offset {offset} has no length field")
        seg_len = (data[pos] << 8) | data[pos + 1]
        if seg_len < 2:
            raise ValueError(f"corrupt JPEG: {marker_name(marker)} at offset {offset} has length {seg_len} < 2")
        end = pos + seg_len
        if end > n:
            raise ValueError(f"truncated JPEG: {marker_name(marker)} at offset {offset} declares {seg_len} "
                             f"bytes but only {n - pos} remain")
        segments.append(Segment(marker, marker_name(marker), offset, seg_len + 2))
        pos = end
        if marker == SOS:
            return segments


def metadata_segments(data: bytes) -> list[Segment]:
    """Every APPn segment (0xE0-0xEF: JFIF, EXIF, XMP, ICC, Adobe, Photoshop/IPTC, ...) and every COM.

    Only the header (SOI..SOS) is inspected: metadata after the first scan is not legal JPEG and would be found
    by ``trailing_bytes`` / ``scan_end`` instead.
    """
    return [s for s in iter_segments(data) if APP0 <= s.marker <= APP15 or s.marker == COM]


def frame_header(data: bytes, segments: list[Segment] | None = None) -> FrameHeader:
    """Parse the (first) SOFn segment. Raises ``ValueError`` when there is none or it is malformed."""
    segments = iter_segments(data) if segments is None else segments
    for seg in segments:
        if seg.marker in SOF_MARKERS:
            p = seg.payload(data)
            if len(p) < 6:
                raise ValueError(f"corrupt JPEG: {seg.name} at offset {seg.offset} is too short")
            ncomp = p[5]
            if len(p) < 6 + 3 * ncomp:
                raise ValueError(f"corrupt JPEG: {seg.name} at offset {seg.offset} lists {ncomp} components "
                                 f"but is {len(p)} bytes long")
            comps = [p[6 + 3 * i:9 + 3 * i] for i in range(ncomp)]
            return FrameHeader(marker=seg.marker, precision=p[0], height=(p[1] << 8) | p[2],
                               width=(p[3] << 8) | p[4], component_ids=tuple(c[0] for c in comps),
                               sampling_hv=tuple((c[1] >> 4, c[1] & 0x0F) for c in comps))
    raise ValueError("not a decodable JPEG: no SOF segment before SOS")


def scan_end(data: bytes, sos: Segment) -> int:
    """Offset just past the EOI that ends the entropy-coded data following ``sos``.

    Only single-scan streams are followed: raises ``ValueError`` when another marker segment (a second scan,
    DHT, DNL, ...) follows the first scan, or when the data ends without EOI.
    """
    n = len(data)
    pos = sos.offset + sos.length
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            raise ValueError("truncated JPEG: entropy-coded data ends without an EOI marker")
        nxt = data[i + 1]
        if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:  # stuffing, restart marker, fill byte
            pos = i + 1
            continue
        if nxt == EOI:
            return i + 2
        raise ValueError(f"not a single-scan JPEG: {marker_name(nxt)} follows the first scan at offset {i}")


# The only markers a published JPEG may hold (issue "Safe builds" §2): SOI, JFIF APP0, DQT, SOF, DHT, DRI, SOS with
# its entropy-coded data (restart markers only under a DRI) and EOI. Nothing else, nowhere else.
DQT, DHT, DRI = 0xDB, 0xC4, 0xDD
_HEADER_ALLOWED = frozenset({DQT, DHT, DRI, *SOF_MARKERS})


def strict_violations(data: bytes) -> list[str]:
    """Why ``data`` is not a strict published JPEG (empty list: it is one).

    Strict: SOI at offset 0; then only DQT, SOFn, DHT, DRI and at most a JFIF APP0 segment, with no fill or
    other bytes between them; one SOS whose entropy-coded data holds only stuffed bytes (FF 00) and, when a DRI
    was given, restart markers; EOI as the last two bytes. Any APPn (other than JFIF APP0), COM, DNL, unknown
    marker, second scan, padding or byte after EOI is a violation.
    """
    data = bytes(data)
    try:
        segments = iter_segments(data)
    except ValueError as err:
        return [str(err)]
    out = _header_violations(data, segments)
    out += _scan_violations(data, segments[-1], any(s.marker == DRI for s in segments))
    return out


def _header_violations(data: bytes, segments: list[Segment]) -> list[str]:
    out = []
    prev_end = 2
    for seg in segments[1:]:
        if seg.offset != prev_end:
            out.append(f"{seg.offset - prev_end} byte(s) (fill or padding) before {seg.name} at offset {seg.offset}")
        prev_end = seg.offset + seg.length
        if seg.marker in _HEADER_ALLOWED or seg.marker == SOS:
            continue
        if seg.marker == APP0 and seg.payload(data).startswith(b"JFIF\x00") and len(seg.payload(data)) == 14:
            continue  # a bare JFIF header (no thumbnail)
        out.append(f"{seg.name} segment at offset {seg.offset} is not allowed in a published JPEG")
    if sum(1 for s in segments if s.marker in SOF_MARKERS) != 1:
        out.append("not exactly one SOF segment")
    return out


def _scan_violations(data: bytes, sos: Segment, restarts: bool) -> list[str]:
    n = len(data)
    pos = sos.offset + sos.length
    expected_rst = 0
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= n:
            return ["entropy-coded data ends without an EOI marker"]
        nxt = data[i + 1]
        if nxt == 0x00:
            pos = i + 2
            continue
        if 0xD0 <= nxt <= 0xD7 and restarts and nxt - 0xD0 == expected_rst:
            expected_rst = (expected_rst + 1) % 8
            pos = i + 2
            continue
        if nxt == EOI:
            trailing = n - (i + 2)
            return [f"{trailing} byte(s) after EOI"] if trailing else []
        return [f"{marker_name(nxt)} marker at offset {i} inside or after the scan is not allowed"]
