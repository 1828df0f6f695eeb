"""`controlsprint generate-video` end to end on a tiny video model folder: files, metadata, determinism,
one-line errors.

The model is the tiny pipeline with live (perturbed) temporal layers, at the sizes test_video_generation.py
uses (64 px, 3 frames, 2 steps), so both files share their compiled programs in one session.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from controlsprint.clipio import read_clip
from controlsprint.models.pipeline import save_pipeline
from tests.conftest import run_cli_process
from tests.test_video_generation import FRAMES, HINT, SIZE, STEPS, _vae_round_trip, video_pipeline


@pytest.fixture(scope="module")
def pipe():
    return video_pipeline(live=True)


@pytest.fixture(scope="module")
def model(pipe, tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("video-cli") / "tiny-video", pipe)


@pytest.fixture(scope="module")
def hint(tmp_path_factory):
    path = tmp_path_factory.mktemp("hint") / "first.png"
    Image.fromarray(HINT).save(path)
    return path


def _args(model, hint, out, *extra):
    return [
        "generate-video", "--model", model, "--prompt", "a red square moving to the right", "--hint", hint,
        "--frames", FRAMES, "--steps", STEPS, "--seed", 5, "--out", out, *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def first_run(model, hint, tmp_path_factory):
    """One generate-video run with --frames-out, shared by the tests that read its files."""
    from controlsprint.cli.main import main

    folder = tmp_path_factory.mktemp("run")
    code = main([str(a) for a in _args(model, hint, folder / "a.gif", "--frames-out", folder / "a.png")])
    assert code == 0
    return folder


def _strip_frames(path) -> np.ndarray:
    """The --frames-out PNG cut back into frames [F, H, W, 3]."""
    return np.asarray(Image.open(path)).reshape(SIZE, FRAMES, SIZE, 3).transpose(1, 0, 2, 3)


def _assert_same_frames(lossy: np.ndarray, exact: np.ndarray, tolerance: float) -> None:
    """`lossy` holds `exact`'s frames in order: near each, and nearer its own frame than any other."""
    assert lossy.shape == exact.shape
    for f in range(len(exact)):
        errors = [np.abs(lossy[f].astype(int) - exact[g]).mean() for g in range(len(exact))]
        assert errors[f] < tolerance and errors[f] == min(errors), (f, errors)


def test_frames_out_holds_the_frames_side_by_side_with_parameters(first_run, model, hint, pipe):
    strip = Image.open(first_run / "a.png")
    assert strip.size == (FRAMES * SIZE, SIZE) and strip.mode == "RGB"
    record = json.loads(strip.text["parameters"])
    assert record["prompt"] == "a red square moving to the right" and strip.text["prompt"] == record["prompt"]
    assert record["frames"] == FRAMES and record["seed"] == 5 and record["steps"] == STEPS
    assert record["hint"] == str(hint) and record["model"] == str(model)
    assert record["software"].startswith("controlsprint ")
    frames = _strip_frames(first_run / "a.png")
    # the PNG is lossless: frame 0 is the hint's round trip through the VAE (the lock is on by default)
    assert np.abs(frames[0].astype(int) - _vae_round_trip(pipe, HINT)).max() <= 2
    assert np.abs(frames[1].astype(int) - frames[0]).mean() > 2  # later frames are generated, not copies


def test_writes_a_gif_of_the_requested_frames_and_size(first_run):
    clip = read_clip(first_run / "a.gif")
    assert clip.shape == (FRAMES, SIZE, SIZE, 3)
    # the frames of the PNG strip, through the GIF palette (the tiny model's frames are noisy: dithered)
    _assert_same_frames(clip, _strip_frames(first_run / "a.png"), tolerance=15)


def test_same_seed_gives_identical_bytes(cli, first_run, model, hint, tmp_path):
    code, out, err = cli(*_args(model, hint, tmp_path / "b.gif"))
    assert code == 0, err
    assert out.strip() == f"wrote {tmp_path / 'b.gif'}: {FRAMES} frames of {SIZE}x{SIZE} at 8 fps"
    assert (tmp_path / "b.gif").read_bytes() == (first_run / "a.gif").read_bytes()
    code, _, err = cli(
        *_args(model, hint, tmp_path / "c.gif")[:-4], "--seed", "6", "--out", tmp_path / "c.gif"
    )
    assert code == 0, err
    assert (tmp_path / "c.gif").read_bytes() != (first_run / "a.gif").read_bytes()


def test_webm_output(cli, first_run, model, hint, tmp_path):
    code, _, err = cli(*_args(model, hint, tmp_path / "clip.webm", "--fps", "12"))
    assert code == 0, err
    clip = read_clip(tmp_path / "clip.webm")
    assert clip.shape == (FRAMES, SIZE, SIZE, 3)
    _assert_same_frames(clip, _strip_frames(first_run / "a.png"), tolerance=25)


@pytest.fixture(scope="module")
def image_model(pipe, tmp_path_factory):
    return save_pipeline(
        tmp_path_factory.mktemp("image-only") / "tiny", dataclasses.replace(pipe, temporal=None)
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--out": "clip.png"}, "clips are written as .gif, .webm, .mp4"),
        ({"--hint": "missing.png"}, "missing.png: no such file"),
        ({"--frames": "0"}, "--frames 0: must be at least 1"),
        ({"--frames": "65"}, "frames=65"),
        ({"--fps": "0"}, "--fps 0.0: must be in (0, 120]"),
        ({"--steps": "0"}, "steps=0"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, model, hint, tmp_path, change, message):
    args = [str(a) for a in _args(model, hint, tmp_path / "o.gif")]
    for flag, value in change.items():
        value = str(tmp_path / value) if flag in ("--out", "--hint") else value
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    code, out, err = cli(*args)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written


def test_model_without_temporal_layers_exits_2(cli, image_model, hint, tmp_path):
    code, _, err = cli(*_args(image_model, hint, tmp_path / "o.gif"))
    assert code == 2
    assert err.count("\n") == 1 and "this model has no temporal layers" in err
    assert not (tmp_path / "o.gif").exists()


def test_bad_out_suffix_in_a_real_process(model, hint, tmp_path):
    result = run_cli_process(*_args(model, hint, tmp_path / "clip.avi"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "clip.avi: clips are written as" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_outputs_exit_2_with_one_line(cli, model, hint, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    code, _, err = cli(*_args(model, hint, tmp_path / "file" / "clip.gif"))
    assert code == 2 and err.count("\n") == 1 and "clip.gif: cannot write the clip" in err, err
    strip = tmp_path / "file" / "strip.png"
    code, _, err = cli(*_args(model, hint, tmp_path / "clip.gif", "--frames-out", strip))
    assert code == 2 and err.count("\n") == 1 and "strip.png: cannot write the image" in err, err
    assert read_clip(tmp_path / "clip.gif").shape == (FRAMES, SIZE, SIZE, 3)  # the clip came first


# -- eval --control video -------------------------------------------------------------------------------


def test_eval_video_scores_clips_with_temporal_layers_on_and_off(cli, model, tmp_path):
    out = tmp_path / "eval"
    code, stdout, _ = cli(
        "eval", "--control", "video", "--model", str(model), "--num", "2", "--frames", "3",
        "--steps", str(STEPS), "--out", str(out),
    )  # fmt: skip
    assert code == 0
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["num"] == 2 and result["frames"] == 3
    for side in ("with_temporal", "without_temporal"):
        scores = result[side]
        assert scores["first_frame_psnr"] > 0 and scores["temporal_diff"] >= 0
        assert scores["temporal_diff_truth"] > 0  # the synthetic clips do move
    # this model's temporal layers are live (perturbed): switching them off changes the free frames
    assert result["with_temporal"]["temporal_diff"] != result["without_temporal"]["temporal_diff"]
    # ... but not frame 0, which is held on the hint either way
    assert result["with_temporal"]["first_frame_psnr"] == result["without_temporal"]["first_frame_psnr"]
    assert json.loads((out / "metrics.json").read_text())["control"] == "video"
    # per clip three rows (truth, temporal layers on, off) of 3 frames, 2 px gutters
    height, width = np.asarray(Image.open(out / "grid.png")).shape[:2]
    tile = (width - 2 * 2) // 3
    assert (width, height) == (3 * tile + 2 * 2, 6 * tile + 5 * 2)
    assert read_clip(out / "clip_0.gif").shape[0] == 3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frames", "1"], "--frames 1"),
        (["--controlnet", "x"], "--controlnet: not used by --control video"),
        (["--scale", "2"], "--scale: not used by --control video"),
        (["--scale", "0"], "--scale 0.0: must be a positive number"),
    ],
)
def test_eval_video_bad_arguments(cli, model, tmp_path, extra, message):
    code, _, err = cli("eval", "--control", "video", "--model", str(model), "--out", str(tmp_path), *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
