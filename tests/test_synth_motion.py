"""`synth --kinds motion`: clips true to their captions and motion records, storage, reader, CLI errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from controlsprint.data.codec import decode_clip, encode_clip
from controlsprint.data.pipeline import run_job
from controlsprint.data.reader import ShardedDataset
from controlsprint.data.synth import render_scene, row_seed
from controlsprint.data.synth.job import make_synth_job
from controlsprint.data.synth.palette import NAMED_COLOURS
from controlsprint.errors import UserError
from controlsprint.evaluation.motion import direction_accuracy, motion_direction, temporal_difference
from tests.conftest import run_cli_process

CAPTION = re.compile(
    r"^(?:a|an) (?P<colour>\w+) (?P<shape>\w+) "
    r"(?P<motion>moving to the left|moving to the right|moving up|moving down|growing|shrinking"
    r"|turning (?P<end>\w+))"
    r"(?: with a still (?P<c1>\w+) (?P<s1>\w+)(?: and a still (?P<c2>\w+) (?P<s2>\w+))?)?"
    r" on (?:a|an) (?P<bg>\w+) background$"
)
PHRASE_OF = {
    ("move", "left"): "moving to the left",
    ("move", "right"): "moving to the right",
    ("move", "up"): "moving up",
    ("move", "down"): "moving down",
    ("grow", None): "growing",
    ("shrink", None): "shrinking",
}


def _scenes(count: int, *, size: int = 64, frames: int = 8, seed: int = 21):
    return [render_scene("motion", row_seed(seed, i), size, frames=frames) for i in range(count)]


def _of_type(kind: str, count: int, **options):
    """`count` scenes whose motion is `kind`, from consecutive row seeds."""
    found, index = [], 0
    while len(found) < count:
        scene = render_scene("motion", row_seed(options.get("seed", 21), index), 64, frames=8)
        if scene.motion["type"] == kind:
            found.append(scene)
        index += 1
    return found


def _colour_mask(frame: np.ndarray, rgb) -> np.ndarray:
    return np.all(frame == np.asarray(rgb, np.uint8), axis=-1)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_same_seed_same_clip_and_shapes():
    for size, frames in ((32, 2), (64, 5), (48, 8)):
        a = render_scene("motion", 1234, size, frames=frames)
        b = render_scene("motion", 1234, size, frames=frames)
        assert a.frames.shape == (frames, size, size, 3) and a.frames.dtype == np.uint8
        assert a.frames.tobytes() == b.frames.tobytes()
        assert (a.caption, a.motion, a.objects) == (b.caption, b.motion, b.objects)
        assert np.array_equal(a.image, a.frames[0]) and a.segmentation.shape == (size, size, 3)
        assert a.motion["frames"] == frames and a.motion["size"] == size
    other = render_scene("motion", 1235, 64, frames=5)
    assert other.frames.tobytes() != render_scene("motion", 1234, 64, frames=5).frames.tobytes()
    assert render_scene("motion", 1234, 64).frames.shape[0] == 8  # the default clip length


def test_captions_name_the_recorded_motion_and_every_colour_differs():
    seen = set()
    for scene in _scenes(60):
        motion, match = scene.motion, CAPTION.match(scene.caption)
        assert match, scene.caption
        seen.add(motion["type"])
        assert (match["colour"], match["shape"]) == (motion["start_colour"], motion["class"])
        if motion["type"] == "colour":
            assert match["end"] == motion["end_colour"] != motion["start_colour"]
        else:
            assert match["motion"] == PHRASE_OF[motion["type"], motion["direction"]]
            assert motion["end_colour"] == motion["start_colour"]
        stills = [(match[f"c{i}"], match[f"s{i}"]) for i in (1, 2) if match[f"c{i}"]]
        objects = scene.objects[1:]
        assert [(o["colour"], o["class"]) for o in objects] == [(match["colour"], match["shape"]), *stills]
        colours = [motion["start_colour"], *(c for c, _ in stills), match["bg"]]
        if motion["type"] == "colour":
            colours.append(motion["end_colour"])
        assert len(set(colours)) == len(colours), scene.caption
        assert np.all(scene.frames[:, 0, 0] == NAMED_COLOURS[match["bg"]])  # a plain background
    assert seen == {"move", "grow", "shrink", "colour"}


def test_only_the_actor_changes():
    """Pixels outside the actor's swept path are the same in every frame: the other shapes stand still."""
    for scene in _scenes(30, size=64):
        motion = scene.motion
        start, end = np.array(motion["start_centre_px"]), np.array(motion["end_centre_px"])
        reach = max(motion["start_radius_px"], motion["end_radius_px"]) + 3  # + anti-aliasing fringe
        ys, xs = np.mgrid[:64, :64]
        points = np.stack([xs, ys], axis=-1).astype(np.float64)
        span = end - start
        along = np.clip(((points - start) @ span) / max(span @ span, 1e-9), 0, 1)[..., None]
        outside = np.hypot(*np.moveaxis(points - (start + along * span), -1, 0)) > reach
        assert np.all(scene.frames[:, outside] == scene.frames[0, outside])
        assert not np.array_equal(scene.frames[0], scene.frames[-1])


def test_moving_clips_move_the_named_way_by_the_recorded_distance():
    for scene in _of_type("move", 12):
        motion = scene.motion
        rgb = NAMED_COLOURS[motion["start_colour"]]
        tracks = np.array([_centroid(_colour_mask(frame, rgb)) for frame in scene.frames])
        shift = tracks[-1] - tracks[0]
        expected = np.array(motion["end_centre_px"]) - np.array(motion["start_centre_px"])
        np.testing.assert_allclose(shift, expected, atol=1.0)
        step = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[motion["direction"]]
        assert np.all(np.diff(tracks, axis=0) @ np.array(step) > 0)  # every frame a step that way
        assert np.linalg.norm(shift) > 0.29 * 64


def test_growing_clips_grow_and_shrinking_clips_shrink():
    for kind, sign in (("grow", 1), ("shrink", -1)):
        for scene in _of_type(kind, 8):
            motion = scene.motion
            areas = np.array(
                [_colour_mask(f, NAMED_COLOURS[motion["start_colour"]]).sum() for f in scene.frames]
            )
            assert np.all(sign * np.diff(areas) > 0), (kind, areas)
            radii = np.array([motion["start_radius_px"], motion["end_radius_px"]])
            assert sign * (radii[1] - radii[0]) > 0.69 * radii.min()  # a factor of 1.7 at least
            centres = [
                _centroid(_colour_mask(f, NAMED_COLOURS[motion["start_colour"]])) for f in scene.frames
            ]
            np.testing.assert_allclose(centres, [motion["start_centre_px"]] * len(centres), atol=1.0)


def test_colour_clips_turn_the_named_colour():
    for scene in _of_type("colour", 8):
        motion = scene.motion
        first = _colour_mask(scene.frames[0], motion["start_rgb"])
        last = _colour_mask(scene.frames[-1], motion["end_rgb"])
        assert first.sum() > 20 and np.array_equal(first, last)  # the same region, recoloured
        assert not _colour_mask(scene.frames[-1], motion["start_rgb"]).any()
        middle = scene.frames[len(scene.frames) // 2][first].astype(int)
        low = np.minimum(motion["start_rgb"], motion["end_rgb"])
        high = np.maximum(motion["start_rgb"], motion["end_rgb"])
        assert np.all((middle >= low) & (middle <= high))
        assert not np.any(np.all(middle == motion["start_rgb"], axis=-1))


def test_motion_direction_recovers_the_record():
    moving = _of_type("move", 40)
    records = [s.motion for s in moving]
    accuracy = direction_accuracy([s.frames for s in moving], records)
    assert accuracy >= 0.95
    assert {r["direction"] for r in records} == {"left", "right", "up", "down"}
    still = [s for s in _scenes(60, seed=4) if s.motion["type"] != "move"]
    assert np.mean([motion_direction(s.frames) is None for s in still]) >= 0.95
    # A single pair of frames is ambiguous; a clip that does not change has no direction.
    assert motion_direction(moving[0].frames[:2]) is None
    assert motion_direction(np.repeat(moving[0].frames[:1], 6, axis=0)) is None
    # The track is in image coordinates: reversing the clip reverses the direction.
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    assert motion_direction(moving[0].frames[::-1]) == opposite[records[0]["direction"]]


def test_temporal_difference():
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    frames[1, 0, 0] = 30  # three channels of one pixel change by 30, then back
    assert temporal_difference(frames) == pytest.approx((2 * 3 * 30) / (2 * 4 * 4 * 3))
    assert temporal_difference(frames[:1]) == 0.0
    scene = _of_type("move", 1)[0]
    expected = np.mean(
        [np.abs(b.astype(float) - a).mean() for a, b in zip(scene.frames[:-1], scene.frames[1:], strict=True)]
    )
    assert temporal_difference(scene.frames) == pytest.approx(expected) and expected > 0
    with pytest.raises(ValueError, match="frames"):
        temporal_difference(np.zeros((4, 4)))


def test_clip_codec_round_trip():
    clip = render_scene("motion", 7, 40, frames=6).frames
    data = encode_clip(clip)
    assert np.array_equal(decode_clip(data), clip)
    assert decode_clip(encode_clip(clip[:, :, :39][:, :39])).shape == (6, 39, 39, 3)
    from controlsprint.data.codec import encode_png

    assert decode_clip(encode_png(np.zeros((10, 25, 3), np.uint8))) is None  # not whole square frames
    assert decode_clip(b"not a png") is None


def test_dataset_round_trip_through_the_reader(tmp_path):
    out = tmp_path / "clips"
    job = make_synth_job(
        out,
        num=6,
        size=32,
        seed=5,
        kinds=("motion",),
        conditions=("segment", "canny"),
        shard_size=4,
        frames=4,
    )
    run_job(job, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recipe"]["frames"] == 4 and {"frames", "motion"} <= set(manifest["columns"])
    rows = [r for s in manifest["shards"] for r in pq.read_table(out / s["file"]).to_pylist()]
    ds = ShardedDataset(out)
    assert ds.has_clips and ds.clip_frames == 4
    examples = ds.examples(np.arange(6), resolution=32)
    assert examples["frames"].shape == (6, 4, 32, 32, 3) and examples["frames"].dtype == np.uint8
    for index, row in enumerate(rows):
        scene = render_scene("motion", row["seed"], 32, frames=4)
        assert row["seed"] == row_seed(5, index) and row["text"] == scene.caption
        assert np.array_equal(examples["frames"][index], scene.frames)
        assert examples["motion"][index] == scene.motion == json.loads(row["motion"])
        assert np.array_equal(examples["images"][index], scene.frames[0])
    batch = next(ds.batches(3, seed=0, resolution=16))
    assert batch["frames"].shape == (3, 4, 16, 16, 3) and batch["frames"].dtype == np.float32
    np.testing.assert_array_equal(batch["frames"][:, 0], batch["pixel_values"])
    assert batch["frames"].min() >= -1.0 and batch["frames"].max() <= 1.0
    # Still datasets are read as before: no frames anywhere.
    still = tmp_path / "still"
    run_job(
        make_synth_job(still, num=2, size=32, seed=5, kinds=("shapes",), conditions=("gray",), shard_size=4),
        progress=False,
    )
    still_ds = ShardedDataset(still)
    assert (
        not still_ds.has_clips and "frames" not in json.loads((still / "manifest.json").read_text())["recipe"]
    )
    assert "frames" not in next(still_ds.batches(2, seed=0, resolution=32))
    assert "frames" not in still_ds.examples([0], resolution=32)


def test_cli_writes_clips_same_bytes_each_time(cli, tmp_path):
    for name in ("a", "b"):
        code, out, err = cli(
            "synth", "--kinds", "motion", "--frames", 3, "--out", tmp_path / name, "--num", 5, "--size", 32,
            "--no-progress",
        )  # fmt: skip
        assert code == 0, err
        assert "wrote 5 rows" in out and "clips/s" in out
    shard = "data/train-00000-of-00001.parquet"
    assert (tmp_path / "a" / shard).read_bytes() == (tmp_path / "b" / shard).read_bytes()
    row = pq.read_table(tmp_path / "a" / shard).to_pylist()[2]
    assert decode_clip(row["frames"]["bytes"]).shape == (3, 32, 32, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--kinds", "motion", "--frames", "0"), "--frames 0: a clip has 2 to 64 frames"),
        (("--kinds", "motion", "--frames", "-3"), "--frames -3: a clip has 2 to 64 frames"),
        (("--kinds", "motion", "--frames", "1"), "--frames 1: a clip has 2 to 64 frames"),
        (("--kinds", "motion", "--frames", "65"), "--frames 65: a clip has 2 to 64 frames"),
        (("--kinds", "shapes", "--frames", "8"), "--frames 8: only clip kinds use it"),
        (("--kinds", "motion,hands"), "cannot share a dataset with still kinds (hands)"),
    ],
)
def test_cli_bad_frames_is_one_line_exit_2(cli, tmp_path, args, message):
    code, _, err = cli("synth", "--out", tmp_path / "ds", "--num", 2, "--size", 32, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ds").exists()  # nothing written


def test_cli_process_bad_frames(tmp_path):
    proc = run_cli_process(
        "synth", "--kinds", "motion", "--frames", "100", "--out", tmp_path / "ds", "--num", "2"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "controlsprint synth: error: --frames 100: a clip has 2 to 64 frames"
    ]


def test_library_frames_checks():
    with pytest.raises(UserError, match="only clip kinds"):
        render_scene("shapes", 1, 32, frames=4)
    with pytest.raises(UserError, match="2 to 64"):
        render_scene("motion", 1, 32, frames=0)


def test_datasets_reads_the_filmstrip_as_an_image(cli, tmp_path):
    out = tmp_path / "ds"
    code, _, err = cli(
        "synth", "--kinds", "motion", "--frames", 5, "--out", out, "--num", 3, "--size", 32, "--no-progress"
    )
    assert code == 0, err
    script = (
        "import datasets, json, sys\n"
        "row = datasets.load_dataset('parquet', data_dir=sys.argv[1])['train'][1]\n"
        "print(json.dumps({'frames': list(row['frames'].size), 'image': list(row['image'].size),\n"
        "  'type': json.loads(row['motion'])['type']}))\n"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = render_scene("motion", row_seed(0, 1), 32, frames=5).motion["type"]
    assert seen == {"frames": [5 * 32, 32], "image": [32, 32], "type": expected}
