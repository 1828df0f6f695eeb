"""The project's PNG writer: every reader decodes it to the same pixels; stdlib-zlib fallback; bad input."""

from __future__ import annotations

import io
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from controlsprint.data import png


def _images():
    rng = np.random.default_rng(3)
    ramp = np.add.outer(np.arange(37), np.arange(53)).astype(np.uint8) * 3
    yield "noise rgb", rng.integers(0, 256, (31, 45, 3), dtype=np.uint8)
    yield "noise gray", rng.integers(0, 256, (31, 45), dtype=np.uint8)
    yield "wrapping ramp rgb", np.stack([ramp, 255 - ramp, ramp * 7], axis=-1)  # row differences wrap
    yield "flat", np.full((16, 16, 3), 200, np.uint8)
    yield "one pixel", np.array([[[1, 2, 3]]], np.uint8)
    yield "one row", rng.integers(0, 256, (1, 70), dtype=np.uint8)
    yield "one column", rng.integers(0, 256, (70, 1, 3), dtype=np.uint8)
    yield "photo-sized", cv2.resize(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), (600, 400))


@pytest.mark.parametrize("name,image", list(_images()), ids=[n for n, _ in _images()])
def test_pixels_survive_opencv_and_pillow(name, image):
    data = png.write_png(image)
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.verify()  # chunk CRCs and structure
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == ("L" if image.ndim == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(decoded), image)
    by_opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    expected = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    np.testing.assert_array_equal(by_opencv.reshape(expected.shape), expected)


def test_same_pixels_same_bytes_and_non_contiguous_views():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert png.write_png(image) == png.write_png(image.copy())
    view = image[::2, 1::3]  # strided: must be read as the pixels it shows
    with Image.open(io.BytesIO(png.write_png(view))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), view)


def test_flat_conditions_compress_far_below_raw_size():
    edges = np.zeros((512, 512), np.uint8)
    edges[::32, :] = 255  # sparse lines, like a canny map
    assert len(png.write_png(edges)) < edges.size / 50


def test_standard_library_zlib_gives_the_same_pixels(monkeypatch):
    image = np.random.default_rng(1).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    monkeypatch.setattr(png, "_zlib", zlib)
    with Image.open(io.BytesIO(png.write_png(image))) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), image)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4), np.float32),
        np.zeros((4,), np.uint8),
        np.zeros((0, 5), np.uint8),
    ],
    ids=["rgba", "float", "1-d", "empty"],
)
def test_unsupported_arrays_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="write_png"):
        png.write_png(bad)
