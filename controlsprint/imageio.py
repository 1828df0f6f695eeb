"""Read any image a user hands us as one thing: an HxWx3 uint8 RGB array. Write PNGs safely.

`load_image` is the single door for pixels into controlsprint (extractors, dataset preparation, the
inference CLI, the demos). It takes a path, raw bytes, a PIL image or a numpy array, and normalises:

- orientation: the EXIF Orientation tag is applied, so a phone photo is upright;
- transparency (RGBA, LA, PA, P with a transparent colour, and 2/4-channel arrays): composited on
  WHITE. Cut-outs and logos are made to be shown on a white page, and a condition extracted from the
  image as people see it is what a ControlNet should learn from;
- palette (P), CMYK, YCbCr, LAB, HSV, 1-bit: converted by Pillow to RGB;
- 16-bit (PIL modes I;16*, I, uint16 arrays): v -> round(v / 257), so 65535 is 255;
- float (PIL mode F, float arrays): taken as [0, 1] and clipped; NaN counts as 0;
- grayscale (L, HxW or HxWx1 arrays): repeated into three channels;
- bool arrays: False/True -> 0/255; other integer arrays only when every value is within 0..255.

Decoding is Pillow's, except for complete 8-bit RGB or gray PNGs without EXIF or transparency, which
OpenCV's libpng decodes to the same pixels in two thirds of the time (`prepare` reads many of them);
a PNG with a damaged chunk (CRC mismatch) goes to Pillow, so the error is ours alone, one line.

Every failure is a `UserError` naming the input: a missing file, a directory, a zero-byte file, a
truncated or corrupt image, something that is not an image, or an image above `max_pixels` (a
decompression bomb: the size comes from the header, before any pixel is decoded).
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controlsprint.errors import UserError
from controlsprint.imagelimits import DEFAULT_MAX_PIXELS  # re-exported: the public name lives here too

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["DEFAULT_MAX_PIXELS", "array_to_rgb", "load_image", "save_png"]


_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_EXIF_ORIENTATION = 0x0112
_TURNING_ORIENTATIONS = {2, 3, 4, 5, 6, 7, 8}  # 1 (or none) is upright
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk, always the same 12 bytes
# Chunks that make Pillow's picture differ from the plain pixels: orientation, transparency.
_PNG_PILLOW_CHUNKS = {b"eXIf", b"tRNS"}


def load_image(source: Any, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return `source` as a C-contiguous HxWx3 uint8 RGB array (see the module doc for the rules).

    `source`: a path (str or Path), bytes, a PIL image or a numpy array. `max_pixels=None` turns the
    size limit off (use it only for images already in memory).
    """
    if isinstance(source, np.ndarray):
        label = f"array {source.shape} {source.dtype}"
        if source.ndim >= 2:
            _check_pixels(source.shape[1], source.shape[0], max_pixels, label)
        return array_to_rgb(source, label)
    from PIL import Image

    if isinstance(source, Image.Image):
        label = f"PIL image {source.width}x{source.height} {source.mode}"
        _check_pixels(source.width, source.height, max_pixels, label)
        return _decoded_to_rgb(source, label)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        label = f"<{len(data)} bytes>"
        if not data:
            raise UserError(f"{label}: empty input (0 bytes), not an image")
        plain = _decode_plain_png(data, label, max_pixels)
        return plain if plain is not None else _decode(io.BytesIO(data), label, max_pixels)
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        _check_file(path)
        with open(path, "rb") as handle:
            if handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE:
                data = _PNG_SIGNATURE + handle.read()
                plain = _decode_plain_png(data, str(path), max_pixels)
                if plain is not None:
                    return plain
            handle.seek(0)
            return _decode(handle, str(path), max_pixels)
    raise UserError(f"{type(source).__name__} input: expected a path, bytes, a PIL image or a numpy array")


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not an image")
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file (0 bytes), not an image")


def _check_pixels(width: int, height: int, max_pixels: int | None, label: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise UserError(
            f"{label}: image is {width}x{height} = {width * height} pixels, above the limit of "
            f"{max_pixels} (raise it with --max-pixels if the image is genuine)"
        )


def _decode_plain_png(data: bytes, label: str, max_pixels: int | None) -> np.ndarray | None:
    """A complete 8-bit RGB or gray PNG without EXIF or transparency, decoded by OpenCV's libpng
    (1.5x faster than Pillow's decoder on a 1.3 MP photo, the same pixels). None for anything else,
    and for whatever OpenCV cannot decode: Pillow then decides, and names the error."""
    if len(data) < 45 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    # A truncated file goes to Pillow directly: libpng would print its own complaint first.
    if depth != 8 or colour not in (0, 2) or not data.endswith(_PNG_END) or not _plain_chunks(data):
        return None
    _check_pixels(width, height, max_pixels, label)
    import cv2

    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION  # gray comes back as three equal channels
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if bgr is None or bgr.shape != (height, width, 3):
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _plain_chunks(data: bytes) -> bool:
    """Whether every chunk is whole with a matching CRC, there is pixel data (IDAT), and no chunk before
    it is one that Pillow's path would act on. A damaged chunk goes to Pillow, which names the error:
    libpng, inside OpenCV, would first print its own complaint ("libpng error: IDAT: CRC error") on
    stderr. (A zlib stream broken under valid CRCs, which takes deliberate crafting, still reaches
    libpng; it fails there, Pillow reports it, and libpng's line appears.)"""
    from controlsprint.data.png import chunk_crc

    view, offset, pixels = memoryview(data), len(_PNG_SIGNATURE), False
    while offset + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        end = offset + 8 + length
        if end + 4 > len(data):
            return False
        if not pixels and kind in _PNG_PILLOW_CHUNKS:
            return False
        pixels = pixels or kind == b"IDAT"
        if chunk_crc(kind, view[offset + 8 : end]) != struct.unpack(">I", data[end : end + 4])[0]:
            return False
        offset = end + 4
    return pixels and offset == len(data)


def _decode(stream: Any, label: str, max_pixels: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(stream)  # reads the header only
    except UnidentifiedImageError:
        raise UserError(f"{label}: not an image (no known image format)") from None
    except Image.DecompressionBombError as err:
        raise UserError(f"{label}: refused as a decompression bomb ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise UserError(f"{label}: cannot read image header ({err})") from None
    with image:
        _check_pixels(image.width, image.height, max_pixels, label)
        try:
            image.load()
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise UserError(f"{label}: truncated or corrupt image ({err})") from None
        return _decoded_to_rgb(image, label)


def _decoded_to_rgb(image: Image.Image, label: str) -> np.ndarray:
    from PIL import ImageOps

    try:
        # exif_transpose copies the whole picture even when there is nothing to turn: ask first.
        if image.getexif().get(_EXIF_ORIENTATION, 1) in _TURNING_ORIENTATIONS:
            image = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{label}: unreadable EXIF orientation ({err})") from None
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return array_to_rgb(_sixteen_bit_to_uint8(np.asarray(image)), label)
    if mode == "F":
        return array_to_rgb(np.asarray(image, dtype=np.float32), label)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if mode in _ALPHA_MODES or image.mode == "RGBA":
        return _composite_on_white(np.asarray(image.convert("RGBA")))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))


def _sixteen_bit_to_uint8(values: np.ndarray) -> np.ndarray:
    clipped = np.clip(values.astype(np.int64), 0, 65535)
    return ((clipped + 128) // 257).astype(np.uint8)


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint16)
    alpha = rgba[..., 3:4].astype(np.uint16)
    blended = (rgb * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended.astype(np.uint8))


def array_to_rgb(array: np.ndarray, label: str = "array") -> np.ndarray:
    """Normalise an in-memory array (HxW, HxWx1/2/3/4; uint8, uint16, bool, float, small ints) to RGB."""
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8 and array.size:
        return np.ascontiguousarray(array)  # the common case costs nothing
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 2, 3, 4) or 0 in array.shape:
        raise UserError(
            f"{label}: expected HxW, HxWx1, HxWx2, HxWx3 or HxWx4 pixels, got shape {array.shape}"
        )
    pixels = _to_uint8(array, label)
    channels = pixels.shape[2]
    if channels == 4:
        return _composite_on_white(pixels)
    if channels == 2:
        return _composite_on_white(
            np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], 2)
        )
    if channels == 1:
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    return np.ascontiguousarray(pixels)


def _to_uint8(array: np.ndarray, label: str) -> np.ndarray:
    kind = array.dtype
    if kind == np.uint8:
        return array
    if kind == np.bool_:
        return array.astype(np.uint8) * 255
    if kind == np.uint16:
        return _sixteen_bit_to_uint8(array)
    if np.issubdtype(kind, np.floating):
        scaled = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(kind, np.integer):
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255:
            return array.astype(np.uint8)
        raise UserError(
            f"{label}: {kind} values span {low}..{high}; give uint8 (0..255), uint16, bool or float in [0, 1]"
        )
    raise UserError(f"{label}: unsupported pixel type {kind}; give uint8, uint16, bool or float in [0, 1]")


def save_png(
    path: str | os.PathLike, array: np.ndarray, text_metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write an HxW or HxWx3/4 uint8 array as PNG, with optional tEXt entries; returns the path.

    The file appears whole or not at all (written next to its target, then renamed), so an
    interrupted run never leaves a half-written PNG that a later run would take for finished work.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    target = Path(path)
    if (
        array.dtype != np.uint8
        or array.ndim not in (2, 3)
        or (array.ndim == 3 and array.shape[2] not in (3, 4))
    ):
        raise UserError(
            f"{target}: can only save HxW or HxWx3/4 uint8 pixels, got {array.shape} {array.dtype}"
        )
    info = PngInfo()
    for key, value in (text_metadata or {}).items():
        info.add_text(str(key), str(value))
    try:  # the folder may be a file, the target a folder, the disk full: one line naming the target
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise UserError(f"{target}: cannot write the image ({err.strerror or err})") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(np.ascontiguousarray(array)).save(stream, format="PNG", pnginfo=info)
        os.replace(temporary, target)
    except BaseException as err:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise UserError(f"{target}: cannot write the image ({err.strerror or err})") from None
        raise
    return target
