import pytest

from veilset.release import jpeg
from veilset.pipeline.encode import encode_jpeg
from tests import imagegen as g


def test_segments_of_a_plain_jpeg_are_consistent():
    data = g.make_jpeg()
    segs = jpeg.iter_segments(data)
    assert segs[0] == jpeg.Segment(0xD8, "SOI", 0, 2)
    assert segs[-1].name == "SOS"
    assert "SOF0" in [s.name for s in segs] and "DQT" in [s.name for s in segs]
    pos = 0
    for seg in segs:
        assert seg.offset == pos
        assert data[seg.offset] == 0xFF and data[seg.offset + 1] == seg.marker
        assert seg.name == jpeg.marker_name(seg.marker)
        pos = seg.offset + seg.length
    assert [s.name for s in jpeg.metadata_segments(data)] == ["APP0"]  # PIL always writes JFIF


def test_metadata_segments_find_every_kind():
    data = g.make_jpeg_with_exif()
    meta = jpeg.metadata_segments(data)
    assert [s.name for s in meta] == ["APP0", "APP1", "APP1", "APP2", "APP13", "COM"]
    payloads = [s.payload(data) for s in meta]
    assert payloads[1].startswith(b"Exif\x00\x00") and payloads[2].startswith(b"http://ns.adobe.com/xap/1.0/")
    assert payloads[3].startswith(b"ICC_PROFILE") and payloads[5] == g.COMMENT_PAYLOAD


def test_fill_bytes_before_a_marker_are_skipped():
    data = g.make_jpeg()
    padded = data[:2] + b"\xff\xff" + data[2:]
    names = [s.name for s in jpeg.iter_segments(padded)]
    assert names == [s.name for s in jpeg.iter_segments(data)]


@pytest.mark.parametrize("data", [b"", b"\xff", b"hello", g.make_png(), b"\xff\xd9\xff\xd8"])
def test_non_jpeg_raises_value_error(data):
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg.iter_segments(data)


@pytest.mark.parametrize("cut", [3, 5, 30, 100])
def test_truncated_header_raises_value_error(cut):
    with pytest.raises(ValueError):
        jpeg.iter_segments(g.make_jpeg()[:cut])


def test_garbage_between_segments_raises():
    data = g.make_jpeg()
    seg = jpeg.iter_segments(data)[1]
    with pytest.raises(ValueError, match="expected a marker"):
        jpeg.iter_segments(data[:seg.offset] + b"\x00" + data[seg.offset:])


def test_frame_header_and_scan_end():
    pixels = g.make_pattern(37, 53)
    data = encode_jpeg(pixels)
    segs = jpeg.iter_segments(data)
    frame = jpeg.frame_header(data, segs)
    assert (frame.height, frame.width, frame.precision) == (37, 53, 8)
    assert frame.baseline and not frame.progressive
    assert frame.component_ids == (1, 2, 3)
    assert frame.sampling_hv == ((2, 2), (1, 1), (1, 1))
    assert jpeg.scan_end(data, segs[-1]) == len(data)
    assert jpeg.scan_end(data + b"trailing junk", segs[-1]) == len(data)


def test_scan_end_refuses_multi_scan_and_missing_eoi():
    prog = g.make_jpeg(progressive=True)
    segs = jpeg.iter_segments(prog)
    assert jpeg.frame_header(prog, segs).progressive
    with pytest.raises(ValueError, match="single-scan"):
        jpeg.scan_end(prog, segs[-1])
    data = g.make_jpeg()
    with pytest.raises(ValueError, match="EOI"):
        jpeg.scan_end(data[:-2], jpeg.iter_segments(data)[-1])


# ---------------------------------------------------------------------------------------- strict published JPEGs
def test_strict_accepts_what_the_encoder_writes():
    data = encode_jpeg(g.make_pattern())
    assert jpeg.strict_violations(data) == []


def test_strict_accepts_a_bare_jfif_header():
    from tests.crafted_jpeg import clean_jpeg

    data = clean_jpeg()
    assert [s.name for s in jpeg.metadata_segments(data)] == ["APP0"]
    assert jpeg.strict_violations(data) == []


@pytest.mark.parametrize("name,needle", [("dnl", "DNL"), ("trailing", "after EOI"), ("between_segments", "corrupt"),
                                         ("fill_bytes", "fill"), ("unknown_marker", "JPG1"), ("com", "COM"),
                                         ("app9", "APP9")])
def test_strict_names_every_hiding_place(name, needle):
    from tests.crafted_jpeg import crafted

    found = jpeg.strict_violations(crafted()[name])
    assert found and needle in "; ".join(found), found


def test_strict_refuses_restart_markers_without_dri_and_a_second_scan():
    from tests.crafted_jpeg import clean_jpeg

    data = clean_jpeg()
    rst = data[:-2] + b"\xff\xd0" + data[-2:]
    assert "RST0" in "; ".join(jpeg.strict_violations(rst))
    second = data[:-2] + b"\xff\xda\x00\x02" + data[-2:]
    assert "SOS" in "; ".join(jpeg.strict_violations(second))
