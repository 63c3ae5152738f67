import io

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from veilset.pipeline.decode import (DEFAULT_MAX_PIXELS, DEFAULT_MAX_SHORT_SIDE, DecodeError, apply_orientation,
                                     decode_image, decode_resized, resize_shortest_side, resized_shape)
from tests import imagegen as g


def _decode_reason(data, **kw):
    with pytest.raises(DecodeError) as info:
        decode_image(data, **kw)
    return info.value


def _assert_rgb8(arr, shape_hw):
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape == (*shape_hw, 3)
    assert arr.flags["C_CONTIGUOUS"]


# ---------------------------------------------------------------------------------------------- hostile input

@pytest.mark.parametrize("name", sorted(g.HOSTILE))
def test_hostile_inputs_are_refused_with_a_reason(name):
    factory, reason = g.HOSTILE[name]
    err = _decode_reason(factory())
    assert err.reason == reason, err
    assert isinstance(err.detail, str) and err.detail


def test_png_bomb_is_refused_from_the_header_without_decoding(monkeypatch):
    def no_load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    data = g.make_png_bomb()
    assert len(data) < 1000
    assert _decode_reason(data).reason == "decompression_bomb"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP"])
def test_max_pixels_is_checked_before_decoding_in_every_format(fmt, monkeypatch):
    data = g.encode(g.make_pattern(40, 50), fmt)
    assert decode_image(data, max_pixels=2000).shape == (40, 50, 3)

    def no_load(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_load)
    err = _decode_reason(data, max_pixels=1999)
    assert err.reason == "decompression_bomb" and "1999" in err.detail


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, None])
def test_max_pixels_is_validated(bad):
    with pytest.raises(ValueError, match="max_pixels"):
        decode_image(g.make_png(), max_pixels=bad)


def test_default_max_pixels_is_pils_hard_limit():
    assert DEFAULT_MAX_PIXELS == 2 * Image.MAX_IMAGE_PIXELS


def test_truncated_images_are_never_loaded_grey_filled(monkeypatch):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    assert _decode_reason(g.make_truncated_jpeg(0.95)).reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert _decode_reason(g.make_jpeg()).reason == "unsupported_configuration"


def test_fuzzed_files_raise_only_decode_error():
    rng = np.random.default_rng(1234)
    sources = [g.make_jpeg(), g.make_png(), g.make_webp(lossless=False), g.make_animated_gif(),
               g.make_tiff(), g.make_bmp(), g.make_jpeg_with_exif(g.make_pattern(), orientation=6)]
    outcomes = {"ok": 0, "refused": 0}
    for src in sources:
        for _ in range(30):
            data = bytearray(src)
            if rng.random() < 0.5:
                data = data[: rng.integers(1, len(data))]
            for _ in range(rng.integers(1, 6)):
                data[rng.integers(0, len(data))] = rng.integers(0, 256)
            try:
                out = decode_image(bytes(data))
            except DecodeError as err:
                assert err.reason and err.reason == err.reason.lower() and " " not in err.reason
                outcomes["refused"] += 1
            else:
                assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
                outcomes["ok"] += 1
    assert outcomes["refused"] > 20  # the fuzz does hit the error paths


# ---------------------------------------------------------------------------------------------- modes / formats

def test_cmyk_jpeg_with_adobe_inversion_has_the_right_colours():
    data = g.make_cmyk_jpeg()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK" and "adobe" in im.info
    out = decode_image(data)
    _assert_rgb8(out, (64, 96))
    assert np.abs(out.astype(int) - g.blocky()).mean() < 4


def test_16bit_grey_png_is_scaled_not_clipped():
    data = g.make_png16_gray()
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode.startswith("I;16")
        raw = np.asarray(im).astype(np.int64)
    out = decode_image(data)
    _assert_rgb8(out, (32, 48))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, -1].tolist() == [255, 255, 255]
    expected = np.rint(raw / 257.0)
    assert np.array_equal(out[..., 0], expected) and np.array_equal(out[..., 1], out[..., 2])
    assert np.all(np.diff(out[0, :, 0].astype(int)) >= 0) and len(np.unique(out)) > 40


def test_16bit_rgb_png():
    out = decode_image(g.make_png16_rgb())
    assert np.array_equal(out, g.blocky())


def test_palette_png_with_transparency_composited_on_white():
    out = decode_image(g.make_palette_png_transparent())
    _assert_rgb8(out, (16, 24))
    assert (out[:, :8] == 255).all()
    assert (out[:, 8:16] == (0, 0, 255)).all() and (out[:, 16:] == (0, 255, 0)).all()


def test_rgba_composited_on_white():
    out = decode_image(g.make_rgba_png())
    assert (out[:, :10] == (255, 0, 0)).all()
    assert (out[:, 10:20] == 127).all()  # black at alpha 128/255 over white
    assert (out[:, 20:] == 255).all()


def test_la_png():
    out = decode_image(g.make_la_png())
    assert (out[:, :4] == 0).all() and (out[:, 4:] == 255).all()


@pytest.mark.parametrize("factory", [g.make_animated_gif, g.make_animated_webp])
def test_animated_gives_first_frame(factory):
    data = factory()
    with Image.open(io.BytesIO(data)) as im:
        assert im.n_frames == 3
    out = decode_image(data)
    _assert_rgb8(out, (20, 30))
    assert np.abs(out.astype(int) - g.FRAME_COLORS[0]).max() <= 2


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"])
def test_1x1(fmt):
    out = decode_image(g.make_1x1(fmt))
    _assert_rgb8(out, (1, 1))
    assert np.abs(out[0, 0].astype(int) - (10, 200, 30)).max() <= 12  # JPEG/WebP/GIF colour error


@pytest.mark.parametrize("factory", [g.make_webp, g.make_tiff, g.make_bmp, g.make_png,
                                     lambda: g.make_tiff(compression="raw")])
def test_lossless_formats_are_exact(factory):
    assert np.array_equal(decode_image(factory()), g.make_pattern())


def test_mpo_gives_the_primary_picture():
    data = g.make_mpo()
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert np.abs(decode_image(data).astype(int) - g.blocky()).mean() < 4


def test_lossy_webp():
    out = decode_image(g.make_webp(lossless=False))
    assert np.abs(out.astype(int) - g.make_pattern()).mean() < 6


def test_greyscale_jpeg_gives_three_equal_channels():
    out = decode_image(g.make_gray_jpeg())
    _assert_rgb8(out, (64, 96))
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_bilevel_int32_and_float_modes():
    bits = decode_image(g.make_bilevel_png())
    assert (bits[:, :8] == 0).all() and (bits[:, 8:] == 255).all()
    for data in (g.make_int32_tiff(), g.make_float_tiff()):
        out = decode_image(data)
        _assert_rgb8(out, (4, 16))
        assert out[0, 0, 0] == 0 and out[0, -1, 0] == 255 and np.all(np.diff(out[0, :, 0].astype(int)) > 0)


# ---------------------------------------------------------------------------------------------- orientation

@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_exact_and_matches_pillow(orientation):
    upright = g.make_pattern(30, 44)
    data = g.make_oriented(upright, orientation, "PNG")
    out = decode_image(data)
    assert np.array_equal(out, upright)
    with Image.open(io.BytesIO(data)) as im:
        assert im.getexif().get(0x0112) == orientation
        assert np.array_equal(out, np.asarray(ImageOps.exif_transpose(im).convert("RGB")))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg(orientation):
    upright = g.make_pattern(48, 64)
    out = decode_image(g.make_oriented(upright, orientation, "JPEG"))
    _assert_rgb8(out, (48, 64))
    assert np.abs(out.astype(int) - upright).mean() < 5


def test_face_photo_stored_sideways_comes_out_upright():
    out = decode_image(g.make_face_photo(orientation=6))
    astro = g.astronaut().astype(int)
    assert np.abs(out - astro).mean() < 5
    assert np.abs(np.rot90(out, 1) - astro).mean() > 30  # the stored (sideways) pixels are very different


def test_apply_orientation_rejects_bad_values():
    with pytest.raises(ValueError, match="1..8"):
        apply_orientation(np.zeros((2, 2, 3), np.uint8), 9)


def test_out_of_range_orientation_is_treated_as_upright():
    pattern = g.make_pattern(20, 30)
    out = decode_image(g.encode(pattern, "PNG", exif=g.exif_bytes(9)))
    assert np.array_equal(out, pattern)


# ---------------------------------------------------------------------------------------------- resize policy

def test_default_short_side_is_sa1b():
    assert DEFAULT_MAX_SHORT_SIDE == 1500


@pytest.mark.parametrize("hw, expected", [
    ((2000, 1600), (1875, 1500)),
    ((1600, 2000), (1500, 1875)),
    ((3001, 1999), (2252, 1500)),
    ((1999, 3001), (1500, 2252)),
    ((1501, 1501), (1500, 1500)),
    ((1501, 9), (1501, 9)),  # short side already small: never upscale, never touch
])
def test_resize_caps_the_short_side(hw, expected):
    pixels = np.zeros((*hw, 3), np.uint8)
    out = resize_shortest_side(pixels)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert resized_shape(*hw, DEFAULT_MAX_SHORT_SIDE) == expected


def test_resize_never_upscales_and_none_disables():
    small = g.make_pattern(40, 60)
    assert resize_shortest_side(small, 100) is small
    assert resize_shortest_side(small, 40) is small
    assert resize_shortest_side(small, None) is small
    assert resize_shortest_side(small, 20).shape == (20, 30, 3)


def test_resize_is_area_averaging_and_deterministic():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (301, 457, 3), dtype=np.uint8)
    a = resize_shortest_side(pixels, 101)
    b = resize_shortest_side(pixels.copy(), 101)
    assert a.shape == (101, 153, 3) and np.array_equal(a, b)
    assert abs(a.mean() - pixels.mean()) < 1.0 and a.std() < pixels.std() / 2  # averaging, not sampling
    flat = np.full((300, 400, 3), 77, np.uint8)
    assert (resize_shortest_side(flat, 7) == 77).all()


def test_resize_keeps_grey_and_single_channel_shapes():
    assert resize_shortest_side(np.zeros((40, 80), np.uint8), 10).shape == (10, 20)
    assert resize_shortest_side(np.zeros((40, 80, 1), np.uint8), 10).shape == (10, 20, 1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "1500"])
def test_resize_validates_max_short_side(bad):
    with pytest.raises(ValueError, match="max_short_side"):
        resize_shortest_side(np.zeros((4, 4, 3), np.uint8), bad)


def test_decode_resized_without_draft_equals_decode_then_resize():
    data = g.make_jpeg(g.make_pattern(120, 90))
    assert np.array_equal(decode_resized(data, max_short_side=50),
                          resize_shortest_side(decode_image(data), 50))


def test_decode_resized_with_draft_is_close_and_same_shape():
    big = np.asarray(Image.fromarray(g.astronaut()).resize((1400, 1000), Image.Resampling.BICUBIC))
    data = g.make_jpeg(big, quality=90)
    exact = decode_resized(data, max_short_side=240)
    drafted = decode_resized(data, max_short_side=240, draft=True)
    assert exact.shape == drafted.shape == (240, 336, 3)
    diff = np.abs(exact.astype(int) - drafted)
    assert diff.mean() < 3 and not np.array_equal(exact, drafted)  # draft really was used
    # orientation is still applied in draft mode
    sideways = g.make_oriented(big, 6, "JPEG", quality=90)
    assert np.abs(decode_resized(sideways, max_short_side=240, draft=True).astype(int) - exact).mean() < 3
