"""load_image turns every input kind and pixel mode into HxWx3 uint8 RGB, and names bad inputs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controlsprint import imageio
from controlsprint.errors import UserError
from controlsprint.imageio import DEFAULT_MAX_PIXELS, array_to_rgb, load_image, save_png


def _png_bytes(image: Image.Image, **save_args) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **save_args)
    return buffer.getvalue()


def _rgb(height: int = 6, width: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _assert_rgb(result: np.ndarray, shape: tuple[int, int]) -> None:
    assert result.dtype == np.uint8 and result.shape == (*shape, 3) and result.flags.c_contiguous


# ---- every input kind gives the same pixels -------------------------------------------------------


def test_path_str_bytes_pil_and_array_inputs_agree(tmp_path):
    pixels = _rgb()
    path = tmp_path / "x.png"
    Image.fromarray(pixels).save(path)
    for source in (path, str(path), path.read_bytes(), Image.open(path), pixels):
        result = load_image(source)
        _assert_rgb(result, (6, 5))
        np.testing.assert_array_equal(result, pixels)


def test_real_photo_loads_at_its_size(photos):
    result = load_image(photos / "hand_thumb_up.jpg")
    _assert_rgb(result, (521, 640))


# ---- PIL modes ------------------------------------------------------------------------------------


def test_grayscale_l_is_repeated_into_three_channels():
    gray = np.arange(30, dtype=np.uint8).reshape(5, 6) * 8
    result = load_image(Image.fromarray(gray, "L"))
    for channel in range(3):
        np.testing.assert_array_equal(result[..., channel], gray)


def test_rgba_is_composited_on_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 100, 0, 255)  # opaque: unchanged
    rgba[0, 1] = (200, 100, 0, 0)  # transparent: white
    rgba[1, 0] = (0, 0, 0, 128)  # half-transparent black: mid gray
    rgba[1, 1] = (255, 0, 0, 51)  # 20 % red over white
    result = load_image(Image.fromarray(rgba, "RGBA"))
    assert tuple(result[0, 0]) == (200, 100, 0)
    assert tuple(result[0, 1]) == (255, 255, 255)
    assert tuple(result[1, 0]) == (127, 127, 127)
    assert tuple(result[1, 1]) == (255, 204, 204)


def test_la_is_composited_on_white():
    la = Image.merge("LA", [Image.new("L", (3, 1), 40), Image.frombytes("L", (3, 1), bytes([0, 255, 128]))])
    result = load_image(la)
    assert [tuple(p) for p in result[0]] == [(255, 255, 255), (40, 40, 40), (147, 147, 147)]


def test_palette_image_and_palette_transparency():
    palette_image = Image.fromarray(_rgb(4, 4)).convert("P", palette=Image.ADAPTIVE, colors=8)
    np.testing.assert_array_equal(load_image(palette_image), np.asarray(palette_image.convert("RGB")))
    # index 0 transparent: those pixels become white
    data = np.array([[0, 1], [1, 0]], dtype=np.uint8)
    transparent = Image.fromarray(data, "P")
    transparent.putpalette([10, 20, 30, 200, 0, 0] + [0] * 762)
    transparent.info["transparency"] = 0
    result = load_image(Image.open(io.BytesIO(_png_bytes(transparent))))
    assert tuple(result[0, 0]) == (255, 255, 255) and tuple(result[0, 1]) == (200, 0, 0)


def test_cmyk_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (2, 1))
    cmyk.putpixel((0, 0), (255, 0, 0, 0))  # cyan
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # black ink
    result = load_image(cmyk)
    assert tuple(result[0, 0]) == (0, 255, 255) and tuple(result[0, 1]) == (0, 0, 0)


def test_sixteen_bit_modes_scale_to_eight_bits(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    expected = np.array([0, 1, 128, 255], dtype=np.uint8)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    np.testing.assert_array_equal(load_image(image)[0, :, 0], expected)
    path = tmp_path / "sixteen.png"  # a 16-bit grayscale PNG file
    image.save(path)
    np.testing.assert_array_equal(load_image(path)[0, :, 1], expected)
    as_int32 = Image.fromarray(values.astype(np.int32), "I")
    np.testing.assert_array_equal(load_image(as_int32)[0, :, 2], expected)


def test_float_mode_f_is_taken_as_unit_range():
    values = np.array([[0.0, 0.5, 1.0, 7.0, -3.0]], dtype=np.float32)
    result = load_image(Image.fromarray(values, "F"))
    np.testing.assert_array_equal(result[0, :, 0], [0, 128, 255, 255, 0])


def test_one_bit_and_ycbcr_modes():
    bits = Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(load_image(bits)[0, :, 0], [0, 255])
    pixels = _rgb(8, 8)
    ycbcr = Image.fromarray(pixels).convert("YCbCr")
    assert np.abs(load_image(ycbcr).astype(int) - pixels).max() <= 3


def test_exif_orientation_is_applied(tmp_path):
    # 40 wide x 20 high, left half red; orientation 6 means "rotate 90 degrees clockwise to display"
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    result = load_image(path)
    _assert_rgb(result, (40, 20))
    assert (result[:20] == (255, 0, 0)).all() and (result[20:] == 0).all()


# ---- PNGs decoded by OpenCV (plain 8-bit RGB or gray), everything else by Pillow -----------------


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_plain_png_takes_the_opencv_path_with_pillows_pixels(tmp_path, mode):
    pixels = _rgb(37, 53, seed=3)
    image = Image.fromarray(pixels) if mode == "RGB" else Image.fromarray(pixels[..., 0], "L")
    data = _png_bytes(image)
    decoded = imageio._decode_plain_png(data, "x.png", None)
    assert decoded is not None  # the OpenCV path took it
    np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))
    path = tmp_path / "x.png"
    path.write_bytes(data)
    for source in (data, path):
        result = load_image(source)
        _assert_rgb(result, (37, 53))
        np.testing.assert_array_equal(result, decoded)


def test_real_png_photo_gives_pillows_pixels(photos):
    path = photos / "business_person.png"
    assert imageio._decode_plain_png(path.read_bytes(), str(path), None) is not None
    with Image.open(path) as image:
        np.testing.assert_array_equal(load_image(path), np.asarray(image.convert("RGB")))


def test_pngs_with_more_than_plain_pixels_are_left_to_pillow():
    pixels = _rgb(8, 8)
    exif = Image.Exif()
    exif[0x0112] = 6
    plain = _png_bytes(Image.fromarray(pixels))
    others = {
        "transparent colour": _png_bytes(Image.fromarray(pixels), transparency=(1, 2, 3)),
        "EXIF": _png_bytes(Image.fromarray(_rgb(8, 12)), exif=exif),
        "palette": _png_bytes(Image.fromarray(pixels).convert("P")),
        "alpha": _png_bytes(Image.fromarray(pixels).convert("RGBA")),
        "16-bit": _png_bytes(Image.fromarray(np.full((4, 4), 40000, np.uint16))),
        "no IEND (truncated)": plain[:-12],
    }
    assert imageio._decode_plain_png(plain, "plain", None) is not None
    for name, data in others.items():
        assert imageio._decode_plain_png(data, name, None) is None, name
    # and through Pillow they keep their meaning: the EXIF turn, the 16-bit scaling
    assert load_image(others["EXIF"]).shape == (12, 8, 3)
    np.testing.assert_array_equal(load_image(others["16-bit"]), np.full((4, 4, 3), 156, np.uint8))


# ---- arrays ---------------------------------------------------------------------------------------


def test_array_layouts_and_dtypes():
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(array_to_rgb(gray), np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(array_to_rgb(gray[..., None]), np.repeat(gray[..., None], 3, 2))
    two_channel = np.stack([gray, np.full_like(gray, 0)], axis=2)  # fully transparent
    assert (array_to_rgb(two_channel) == 255).all()
    four_channel = np.concatenate([_rgb(2, 2), np.full((2, 2, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(array_to_rgb(four_channel), four_channel[..., :3])
    np.testing.assert_array_equal(array_to_rgb(np.array([[True, False]]))[0, :, 0], [255, 0])
    np.testing.assert_array_equal(array_to_rgb(np.array([[65535, 0]], dtype=np.uint16))[0, :, 0], [255, 0])
    floats = np.array([[0.0, 0.25, 1.0, 1.5, -1.0, np.nan]], dtype=np.float64)
    np.testing.assert_array_equal(array_to_rgb(floats)[0, :, 0], [0, 64, 255, 255, 0, 0])
    np.testing.assert_array_equal(array_to_rgb(np.array([[3, 250]], dtype=np.int64))[0, :, 0], [3, 250])


def test_uint8_rgb_array_is_not_copied():
    pixels = _rgb()
    assert load_image(pixels) is pixels


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((4, 4, 5), np.uint8), "shape (4, 4, 5)"),
        (np.zeros((4,), np.uint8), "shape (4,)"),
        (np.zeros((0, 4, 3), np.uint8), "shape (0, 4, 3)"),
        (np.array([[-1, 300]], dtype=np.int32), "values span -1..300"),
        (np.zeros((2, 2), np.complex64), "unsupported pixel type complex64"),
    ],
)
def test_bad_arrays_are_user_errors(array, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_image(array)


# ---- bad inputs -----------------------------------------------------------------------------------


def _huge_png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose pixel data is a few bytes (a bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_error_for_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nothing\.png: no such file"):
        load_image(tmp_path / "nothing.png")


def test_error_for_directory(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_image(tmp_path)


def test_error_for_zero_byte_file_and_empty_bytes(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.jpg: empty file \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(UserError, match="empty input"):
        load_image(b"")


@pytest.mark.parametrize("photo", ["cat.jpg", "business_person.png"])  # Pillow's and OpenCV's paths
def test_error_for_truncated_image(tmp_path, photos, photo):
    data = (photos / photo).read_bytes()
    truncated = tmp_path / f"truncated{Path(photo).suffix}"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(UserError, match=rf"{truncated.name}: truncated or corrupt image"):
        load_image(truncated)


def test_damaged_png_chunk_is_one_line_error_and_libpng_stays_quiet(tmp_path, photos, capfd):
    # A flipped byte inside the pixel data of a PNG the OpenCV path would take: its chunk CRC no longer
    # matches, so the file goes to Pillow, which names the error; libpng (inside OpenCV) would have
    # printed "libpng error: ..." on stderr first, a second line the user did not ask for.
    data = bytearray((photos / "business_person.png").read_bytes())
    data[data.index(b"IDAT") + 1000] ^= 0xFF
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(bytes(data))
    for source in (damaged, bytes(data)):
        with pytest.raises(UserError, match="truncated or corrupt image") as err:
            load_image(source)
        assert "\n" not in str(err.value)
    assert "libpng" not in capfd.readouterr().err


def test_error_for_non_image(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not pixels at all\n")
    with pytest.raises(UserError, match=r"notes\.jpg: not an image"):
        load_image(text)


def test_bomb_is_refused_from_the_header_before_decoding(tmp_path):
    # 9000 x 9000 = 81 M pixels, above the 67 M default. The data would be "truncated" if decoded, so
    # a limit message (not a truncation message) proves the size was checked before decoding.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_huge_png_header(9000, 9000))
    with pytest.raises(UserError, match=r"bomb\.png: image is 9000x9000 = 81000000 pixels, above the limit"):
        load_image(bomb)
    assert DEFAULT_MAX_PIXELS < 9000 * 9000


def test_pixel_limit_is_configurable(photos):
    path = photos / "hand_thumb_up.jpg"  # 640 x 521
    with pytest.raises(UserError, match="above the limit of 100000"):
        load_image(path, max_pixels=100_000)
    with pytest.raises(UserError, match="above the limit of 100000"):
        load_image(np.zeros((521, 640, 3), np.uint8), max_pixels=100_000)
    assert load_image(path, max_pixels=640 * 521).shape == (521, 640, 3)
    assert load_image(path, max_pixels=None).shape == (521, 640, 3)


def test_error_for_unsupported_source_type():
    with pytest.raises(UserError, match="int input"):
        load_image(42)


# ---- save_png -------------------------------------------------------------------------------------


def test_save_png_round_trips_pixels_and_text_metadata(tmp_path):
    pixels = _rgb(9, 7)
    target = save_png(tmp_path / "deep" / "out.png", pixels, {"controlsprint:extractor": "canny", "n": 3})
    assert target == tmp_path / "deep" / "out.png"
    with Image.open(target) as reread:
        assert reread.text == {"controlsprint:extractor": "canny", "n": "3"}
    np.testing.assert_array_equal(load_image(target), pixels)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]  # no temporary file left


def test_save_png_refuses_non_uint8(tmp_path):
    with pytest.raises(UserError, match="uint8"):
        save_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert not Path(tmp_path / "x.png").exists()
