"""Write and read short clips ([F, H, W, 3] uint8 RGB): GIF, WebM (VP9) and MP4 (MPEG-4 Part 2).

Uses only what the project already depends on (Pillow for GIF, OpenCV's bundled FFmpeg for video):
OpenCV's wheels have no H.264 encoder, so an .mp4 holds MPEG-4 Part 2, which desktop players play
but browsers do not; the demos hand browsers WebM (VP9 plays in every current browser) and GIF.
Files appear whole or not at all: written beside the target under a temporary name, then renamed.
VP9 and MPEG-4 store colour at half resolution, so those need an even width and height (a .gif does not).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from controlsprint.errors import UserError

# suffix -> OpenCV fourcc (None: written with Pillow)
CLIP_FORMATS = {".gif": None, ".webm": "VP90", ".mp4": "mp4v"}
# A GIF comment giving the duration of one frame: Pillow's encoder drops a frame identical to the one
# before and lengthens that one instead, so `read_clip` needs the unit to give back every frame.
GIF_FRAME_MS = "controlsprint frame_ms="


def clip_suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CLIP_FORMATS:
        raise UserError(f"{path}: clips are written as {', '.join(CLIP_FORMATS)}; use one of those suffixes")
    return suffix


def save_clip(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    target = Path(path)
    suffix = clip_suffix(target)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise UserError(f"{target}: a clip is [frames, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if suffix != ".gif" and (frames.shape[1] % 2 or frames.shape[2] % 2):
        raise UserError(
            f"{target}: {suffix} needs an even width and height, got {frames.shape[2]}x{frames.shape[1]}; "
            "write a .gif instead"
        )
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 120:
        raise UserError(f"fps={fps!r}: must be a number in (0, 120]")
    partial = target.with_name(f".{target.stem}.partial{suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".gif":
            _write_gif(partial, frames, fps)
        else:
            _write_video(partial, frames, fps, CLIP_FORMATS[suffix])
        partial.replace(target)
    except OSError as err:  # the folder is a file, the target a folder, the disk full, ...
        raise UserError(f"{target}: cannot write the clip ({err.strerror or err})") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    return target


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    # GIF stores whole centiseconds (so a frame lasts exactly that), and browsers clamp below 20 ms.
    frame_ms = 10 * max(2, round(100 / fps))
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=frame_ms,
        loop=0,
        comment=f"{GIF_FRAME_MS}{frame_ms}",
    )


def _write_video(path: Path, frames: np.ndarray, fps: float, fourcc: str) -> None:
    import cv2

    height, width = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), float(fps), (width, height))
    if not writer.isOpened():
        raise UserError(f"{path}: this OpenCV build cannot encode {fourcc} video; write a .gif instead")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))  # OpenCV wants BGR
    finally:
        writer.release()


def read_clip(path: str | os.PathLike) -> np.ndarray:
    """All frames of a clip written by `save_clip` (or any GIF/video OpenCV reads), [F, H, W, 3] uint8."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such clip")
    if path.suffix.lower() == ".gif":
        return _read_gif(path)
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame[..., ::-1])
    finally:
        capture.release()
    if not frames:
        raise UserError(f"{path}: not a readable clip")
    return np.stack(frames)


def _read_gif(path: Path) -> np.ndarray:
    from PIL import Image, ImageSequence

    frames = []
    try:
        with Image.open(path) as image:
            comment = image.info.get("comment", b"").decode("latin-1")
            frame_ms = int(comment[len(GIF_FRAME_MS) :]) if comment.startswith(GIF_FRAME_MS) else 0
            for frame in ImageSequence.Iterator(image):
                pixels = np.asarray(frame.convert("RGB"))
                # a frame Pillow merged with its identical successors lasts that many frame units
                repeats = max(1, round(frame.info.get("duration", 0) / frame_ms)) if frame_ms > 0 else 1
                frames.extend([pixels] * repeats)
    except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise UserError(f"{path}: not a readable GIF ({err})") from None
    return np.stack(frames)
