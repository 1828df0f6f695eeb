"""Clip files (controlsprint.clipio): GIF, WebM and MP4 round trips, errors, and no half-written files."""

from __future__ import annotations

import numpy as np
import pytest

from controlsprint import clipio
from controlsprint.clipio import read_clip, save_clip
from controlsprint.errors import UserError

F, H, W = 5, 48, 64
COLOURS = [(255, 0, 0), (0, 200, 0), (20, 40, 250), (230, 210, 30), (0, 0, 0)]


def flat_frames() -> np.ndarray:
    return np.stack([np.full((H, W, 3), colour, np.uint8) for colour in COLOURS])


def smooth_frames() -> np.ndarray:
    """A gradient sliding right by 6 levels a frame, over a vertical ramp: what lossy codecs keep well."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    frames = [np.stack([x * 3 + 6 * f, y * 4, 128 + 0 * x], axis=-1) for f in range(F)]
    return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def _no_leftovers(folder, *names):
    assert sorted(p.name for p in folder.iterdir()) == sorted(names)


def test_gif_round_trip_is_exact_for_flat_frames(tmp_path):
    frames = flat_frames()
    path = save_clip(tmp_path / "flat.gif", frames, fps=8)
    assert path == tmp_path / "flat.gif"
    back = read_clip(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.array_equal(back, frames)
    _no_leftovers(tmp_path, "flat.gif")


def test_gif_keeps_every_frame_when_some_repeat(tmp_path):
    """Pillow merges a frame identical to the one before into it; the clip must still come back whole."""
    flat = flat_frames()
    frames = flat[[0, 0, 0, 1, 2, 2, 3]]
    back = read_clip(save_clip(tmp_path / "still.gif", frames, fps=12))
    assert np.array_equal(back, frames)
    still = np.repeat(flat[:1], 6, axis=0)  # a clip that does not move at all
    assert np.array_equal(read_clip(save_clip(tmp_path / "still.gif", still, fps=30)), still)


def test_gif_timing(tmp_path):
    from PIL import Image, ImageSequence

    save_clip(tmp_path / "timed.gif", flat_frames(), fps=10)
    with Image.open(tmp_path / "timed.gif") as image:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
        assert image.info["loop"] == 0
    assert durations == [100] * F


def test_gif_of_smooth_frames_is_near(tmp_path):
    frames = smooth_frames()
    back = read_clip(save_clip(tmp_path / "smooth.gif", frames, fps=8))
    assert back.shape == frames.shape
    assert np.abs(back.astype(int) - frames).mean() < 4  # 256-colour palette


@pytest.mark.parametrize("suffix", [".webm", ".mp4", ".MP4"])
def test_video_round_trip_within_lossy_tolerance(tmp_path, suffix):
    frames = smooth_frames()
    path = save_clip(tmp_path / f"clip{suffix}", frames, fps=8)
    back = read_clip(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    error = np.abs(back.astype(int) - frames)
    assert error.mean() < 6, error.mean()
    # each frame is still the frame it was: nearer its own original than its neighbours' (6 levels apart)
    for f in range(F):
        others = [np.abs(back[f].astype(int) - frames[g]).mean() for g in range(F) if g != f]
        assert error[f].mean() < min(others), f
    _no_leftovers(tmp_path, path.name)


def test_webm_is_vp9(tmp_path):
    path = save_clip(tmp_path / "clip.webm", smooth_frames(), fps=8)
    data = path.read_bytes()
    assert data.startswith(b"\x1a\x45\xdf\xa3") and b"webm" in data[:64]  # EBML header, DocType webm
    assert b"V_VP9" in data


@pytest.mark.parametrize("name", ["clip.png", "clip.avi", "clip", "clip.gif.txt"])
def test_bad_suffix_is_a_user_error(tmp_path, name):
    with pytest.raises(UserError, match="clips are written as .gif, .webm, .mp4"):
        save_clip(tmp_path / name, flat_frames(), fps=8)
    _no_leftovers(tmp_path)


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((3, 8, 8, 4), np.uint8),  # RGBA
        np.zeros((8, 8, 3), np.uint8),  # one image, not a clip
        np.zeros((3, 8, 8, 3), np.float32),  # not uint8
        np.zeros((0, 8, 8, 3), np.uint8),  # no frames
        np.zeros((3, 0, 8, 3), np.uint8),  # no rows
    ],
)
@pytest.mark.parametrize("suffix", [".gif", ".webm"])
def test_bad_array_is_a_user_error(tmp_path, frames, suffix):
    with pytest.raises(UserError, match=r"a clip is \[frames, H, W, 3\] uint8"):
        save_clip(tmp_path / f"bad{suffix}", frames, fps=8)
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
def test_odd_sizes_are_refused_by_the_video_codecs_but_not_gif(tmp_path, suffix):
    frames = np.zeros((2, 35, 33, 3), np.uint8)
    with pytest.raises(UserError, match=f"{suffix} needs an even width and height, got 33x35"):
        save_clip(tmp_path / f"odd{suffix}", frames, fps=8)
    assert read_clip(save_clip(tmp_path / "odd.gif", frames, fps=8)).shape == frames.shape


@pytest.mark.parametrize("fps", [0, -1, 121, float("nan"), "8", True])
def test_bad_fps_is_a_user_error(tmp_path, fps):
    with pytest.raises(UserError, match="fps="):
        save_clip(tmp_path / "clip.gif", flat_frames(), fps=fps)
    _no_leftovers(tmp_path)


def test_unwritable_target_is_a_user_error_and_leaves_nothing(tmp_path):
    (tmp_path / "taken.gif").mkdir()  # the target is a folder
    with pytest.raises(UserError, match="taken.gif: cannot write the clip"):
        save_clip(tmp_path / "taken.gif", flat_frames(), fps=8)
    _no_leftovers(tmp_path, "taken.gif")
    (tmp_path / "file").write_text("x")  # the target's folder is a file
    with pytest.raises(UserError, match="cannot write the clip"):
        save_clip(tmp_path / "file" / "clip.webm", flat_frames(), fps=8)
    _no_leftovers(tmp_path, "taken.gif", "file")


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch, suffix):
    target = save_clip(tmp_path / f"clip{suffix}", flat_frames()[:2], fps=8)
    before = target.read_bytes()
    writer = "_write_gif" if suffix == ".gif" else "_write_video"
    real = getattr(clipio, writer)

    def fail_half_way(path, *args):
        real(path, *args)  # the partial file exists now ...
        raise KeyboardInterrupt  # ... and the write is interrupted before the rename

    monkeypatch.setattr(clipio, writer, fail_half_way)
    with pytest.raises(KeyboardInterrupt):
        save_clip(target, smooth_frames(), fps=8)
    assert target.read_bytes() == before
    _no_leftovers(tmp_path, target.name)


def test_an_encoder_that_does_not_open_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setitem(clipio.CLIP_FORMATS, ".mp4", "ZZZZ")  # a fourcc no encoder has
    with pytest.raises(UserError, match="cannot encode ZZZZ video"):
        save_clip(tmp_path / "clip.mp4", smooth_frames(), fps=8)
    _no_leftovers(tmp_path)


def test_reading_what_is_not_a_clip(tmp_path):
    with pytest.raises(UserError, match="no such clip"):
        read_clip(tmp_path / "missing.gif")
    (tmp_path / "junk.gif").write_bytes(b"not a gif at all")
    with pytest.raises(UserError, match="junk.gif: not a readable GIF"):
        read_clip(tmp_path / "junk.gif")
    (tmp_path / "junk.webm").write_bytes(b"not a webm either")
    with pytest.raises(UserError, match="junk.webm: not a readable clip"):
        read_clip(tmp_path / "junk.webm")


def test_a_foreign_gif_reads_frame_by_frame(tmp_path):
    """A GIF not written by save_clip (no frame-unit comment): one frame per stored frame."""
    from PIL import Image

    frames = [Image.fromarray(f) for f in flat_frames()[:3]]
    frames[0].save(tmp_path / "foreign.gif", save_all=True, append_images=frames[1:], duration=[40, 200, 80])
    back = read_clip(tmp_path / "foreign.gif")
    assert np.array_equal(back, flat_frames()[:3])
