"""Write and read short clips ([F, H, W, 3] uint8 RGB): GIF, WebM (VP9) and MP4 (MPEG-4 Part 2).

Uses only what the project already depends on (Pillow for GIF, OpenCV's bundled FFmpeg for video):
OpenCV's wheels have no H.264 encoder, so an .mp4 holds MPEG-4 Part 2, which desktop players play
but browsers do not; the demos hand browsers WebM (VP9 plays in every current browser) and GIF.
Files appear whole or not at all: written beside the target under a temporary name, then renamed.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from controlsprint.errors import UserError

# suffix -> OpenCV fourcc (None: written with Pillow)
CLIP_FORMATS = {".gif": None, ".webm": "VP90", ".mp4": "mp4v"}


def clip_suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in CLIP_FORMATS:
        raise UserError(f"{path}: clips are written as {', '.join(CLIP_FORMATS)}; use one of those suffixes")
    return suffix


def save_clip(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    target = Path(path)
    suffix = clip_suffix(target)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise UserError(f"{target}: a clip is [frames, H, W, 3] uint8, got {frames.shape} {frames.dtype}")
    if not 0 < fps <= 120:
        raise UserError(f"fps={fps}: must be in (0, 120]")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.stem}.partial{suffix}")
    try:
        if suffix == ".gif":
            _write_gif(partial, frames, fps)
        else:
            _write_video(partial, frames, fps, CLIP_FORMATS[suffix])
        partial.replace(target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return target


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    duration_ms = max(20, round(1000 / fps))  # GIF stores centiseconds; browsers clamp below 20 ms
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=duration_ms, loop=0)


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
        from PIL import Image, ImageSequence

        with Image.open(path) as image:
            return np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)])
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
