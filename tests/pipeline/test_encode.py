import io

import numpy as np
import pytest
from PIL import Image

from veilset.release import jpeg
from veilset.pipeline.decode import decode_image
from veilset.pipeline.encode import DEFAULT_QUALITY, encode_jpeg, encoder_identity, strip_jpeg_metadata
from tests import imagegen as g


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


def _assert_no_metadata(data):
    assert jpeg.metadata_segments(data) == []
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert len(im.getexif()) == 0
        for key in ("exif", "icc_profile", "xmp", "comment", "photoshop", "adobe", "jfif", "mp"):
            assert key not in im.info, key
    for secret in g.METADATA_SECRETS:
        assert secret not in data
    assert data.count(b"\xff\xd8") == 1  # no embedded thumbnail JPEG
    assert data.endswith(b"\xff\xd9")


def test_encode_writes_a_baseline_420_jpeg_without_any_metadata():
    pixels = g.astronaut()
    data = encode_jpeg(pixels)
    _assert_no_metadata(data)
    frame = jpeg.frame_header(data)
    assert frame.baseline and frame.sampling_hv == ((2, 2), (1, 1), (1, 1))
    assert (frame.width, frame.height) == (512, 512)
    assert [s.name for s in jpeg.iter_segments(data)].count("SOS") == 1
    assert _psnr(decode_image(data), pixels) > 30


def test_encode_is_deterministic_for_equal_pixels():
    pixels = g.make_pattern(61, 77)
    a = encode_jpeg(pixels)
    assert encode_jpeg(pixels.copy()) == a
    fortran = np.asfortranarray(pixels)
    assert encode_jpeg(fortran) == a
    assert encode_jpeg(pixels, quality=DEFAULT_QUALITY) == a
    assert encode_jpeg(pixels, quality=50) != a
    assert encoder_identity()["libjpeg"]


def test_encode_odd_and_tiny_sizes():
    for h, w in [(1, 1), (1, 7), (9, 1), (17, 33)]:
        data = encode_jpeg(np.full((h, w, 3), 100, np.uint8))
        _assert_no_metadata(data)
        assert decode_image(data).shape == (h, w, 3)


@pytest.mark.parametrize("quality", [0, 101, 90.0, True, "90"])
def test_quality_is_validated(quality):
    with pytest.raises(ValueError, match="quality"):
        encode_jpeg(g.make_pattern(), quality=quality)


@pytest.mark.parametrize("pixels", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                    np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)])
def test_pixels_are_validated(pixels):
    with pytest.raises(ValueError, match="pixels"):
        encode_jpeg(pixels)


def test_metadata_of_the_source_is_all_gone_after_decode_and_encode():
    src = g.make_jpeg_with_exif(orientation=6)
    # the source really carries all of it
    names = [s.name for s in jpeg.metadata_segments(src)]
    assert names == ["APP0", "APP1", "APP1", "APP2", "APP13", "COM"]
    with Image.open(io.BytesIO(src)) as im:
        exif = im.getexif()
        assert exif.get(0x0112) == 6 and exif.get(0x010F) == "VeilsetCam"
        assert exif.get_ifd(0x8825)[2] == (52.0, 22.0, 12.34)  # GPS latitude
        assert exif.get_ifd(0x8769)[0xA431] == "SN-0123456789"  # body serial number
        assert "icc_profile" in im.info and "xmp" in im.info and "comment" in im.info
    assert src.count(b"\xff\xd8") == 2  # the EXIF thumbnail
    for secret in g.METADATA_SECRETS:
        assert secret in src

    pixels = decode_image(src)
    out = encode_jpeg(pixels)
    _assert_no_metadata(out)
    assert np.abs(decode_image(out).astype(int) - g.astronaut()).mean() < 5  # upright


# ---------------------------------------------------------------------------------------------- fast path

def _pixels(data):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def test_strip_drops_all_metadata_losslessly():
    src = g.make_jpeg_with_exif(icc=False)
    out = strip_jpeg_metadata(src)
    assert out is not None
    _assert_no_metadata(out)
    assert np.array_equal(_pixels(out), _pixels(src))
    assert len(out) < len(src)
    # entropy-coded data is kept byte for byte
    sos_src, sos_out = jpeg.iter_segments(src)[-1], jpeg.iter_segments(out)[-1]
    assert src[sos_src.offset:] == out[sos_out.offset:]


def test_strip_drops_data_after_eoi():
    src = g.make_jpeg() + g.make_jpeg(g.make_pattern(8, 8)) + b"trailing"
    out = strip_jpeg_metadata(src)
    assert out is not None and out.count(b"\xff\xd8") == 1 and out.endswith(b"\xff\xd9")
    assert np.array_equal(_pixels(out), _pixels(src))


def test_strip_drops_the_extra_pictures_of_an_mpo():
    src = g.make_mpo()
    assert "APP2" in [s.name for s in jpeg.metadata_segments(src)]  # the MPF index
    out = strip_jpeg_metadata(src)
    assert out is not None and out.count(b"\xff\xd8") == 1
    _assert_no_metadata(out)
    assert np.array_equal(_pixels(out), _pixels(src))


def test_strip_accepts_its_own_encoder_output_unchanged():
    data = encode_jpeg(g.make_pattern())
    assert strip_jpeg_metadata(data) == data


@pytest.mark.parametrize("name, data", [
    ("progressive", g.make_jpeg(progressive=True)),
    ("cmyk", g.make_cmyk_jpeg()),
    ("greyscale", g.make_gray_jpeg()),
    ("orientation_6", g.make_oriented(g.make_pattern(), 6, "JPEG")),
    ("icc_profile", g.make_jpeg_with_exif(g.make_pattern())),
    ("png", g.make_png()),
    ("truncated", g.make_truncated_jpeg()),
    ("empty", b""),
])
def test_strip_refuses_sources_that_do_not_qualify(name, data):
    assert strip_jpeg_metadata(data) is None


def test_strip_refuses_images_above_the_resize_cap():
    data = g.make_jpeg(g.make_pattern(40, 60))
    assert strip_jpeg_metadata(data, max_short_side=39) is None
    assert strip_jpeg_metadata(data, max_short_side=40) is not None
    assert strip_jpeg_metadata(data, max_short_side=None) is not None
