"""`controlsprint synth`: determinism, captions true of the pictures, hands geometry, the dataset format."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from controlsprint.data.codec import decode_rgb
from controlsprint.data.synth import render_scene, row_seed
from controlsprint.data.synth.palette import NAMED_COLOURS, SEGMENT_CLASS_COLOURS
from controlsprint.errors import UserError


def _read_rows(directory) -> list[dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    rows = []
    for shard in manifest["shards"]:
        rows.extend(pq.read_table(directory / shard["file"]).to_pylist())
    return rows


def test_same_seed_same_bytes_other_seed_differs(cli, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        code, out, err = cli(
            "synth", "--out", tmp_path / name, "--num", 40, "--seed", seed, "--kinds", "shapes,hands",
            "--shard-size", 16, "--no-progress",
        )  # fmt: skip
        assert code == 0, err
        assert "wrote 40 rows" in out
    shards = sorted(p.name for p in (tmp_path / "a" / "data").iterdir())
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    for shard in shards:
        assert (tmp_path / "a" / "data" / shard).read_bytes() == (
            tmp_path / "b" / "data" / shard
        ).read_bytes()
        assert (tmp_path / "a" / "data" / shard).read_bytes() != (
            tmp_path / "c" / "data" / shard
        ).read_bytes()
    rows_a, rows_c = _read_rows(tmp_path / "a"), _read_rows(tmp_path / "c")
    assert [r["text"] for r in rows_a] != [r["text"] for r in rows_c]
    # Row i is reproducible alone from its stored seed, independent of sharding.
    row = rows_a[17]
    assert row["kind"] == "hands" and row["seed"] == row_seed(3, 17)
    scene = render_scene("hands", row["seed"], 128)
    assert np.array_equal(decode_rgb(row["image"]["bytes"]), scene.image)
    assert row["text"] == scene.caption


def test_worker_count_does_not_change_the_bytes(cli, tmp_path):
    for name, workers in (("one", 1), ("two", 2)):
        code, _, err = cli(
            "synth",
            "--out",
            tmp_path / name,
            "--num",
            24,
            "--shard-size",
            10,
            "--workers",
            workers,
            "--no-progress",
        )
        assert code == 0, err
    for shard in (tmp_path / "one" / "data").iterdir():
        assert shard.read_bytes() == (tmp_path / "two" / "data" / shard.name).read_bytes()


CAPTION = re.compile(
    r"^(?:a|an) (?P<c0>\w+) (?P<s0>\w+) (?:"
    r"(?P<where0>at the \w+(?: \w+)?|in the center|on the \w+)"
    r"|(?P<rel>above|below|to the left of|to the right of) (?:a|an) (?P<c1>\w+) (?P<s1>\w+)"
    r"(?:, and (?:a|an) (?P<c2>\w+) (?P<s2>\w+) (?P<where2>at the \w+(?: \w+)?|in the center|on the \w+),)?"
    r") on (?:a|an) (?P<bg>\w+)(?: and (?P<bg2>\w+) gradient)? background$"
)


def _named_object_centre(image, segmentation, colour: str, shape: str) -> np.ndarray:
    """Centroid of pixels that are exactly the named colour in the picture and the shape's class in the map."""
    in_colour = np.all(image == NAMED_COLOURS[colour], axis=-1)
    in_class = np.all(segmentation == SEGMENT_CLASS_COLOURS[shape], axis=-1)
    ys, xs = np.nonzero(in_colour & in_class)
    assert xs.size > 20, f"no {colour} {shape} in the picture"
    return np.array([xs.mean(), ys.mean()])


def _check_relation(word: str, a: np.ndarray, b: np.ndarray) -> None:
    dx, dy = a - b
    expected = {
        "above": dy < 0 and abs(dy) > abs(dx),
        "below": dy > 0 and abs(dy) > abs(dx),
        "to the left of": dx < 0 and abs(dx) > abs(dy),
        "to the right of": dx > 0 and abs(dx) > abs(dy),
    }[word]
    assert expected, f"'{word}' is false: offset {dx:.1f}, {dy:.1f}"


def _check_where(phrase: str, centre: np.ndarray, size: int) -> None:
    column = ("left", "center", "right")[min(2, int(3 * centre[0] / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * centre[1] / size))]
    words = phrase.split()
    if phrase == "in the center":
        assert (row, column) == ("middle", "center")
    elif words[0] == "on":
        assert (row, column) == ("middle", words[-1])
    else:
        assert row == words[2] and column == (words[3] if len(words) == 4 else "center")


@pytest.mark.parametrize("index", range(0, 60))
def test_shapes_caption_is_true_of_picture_and_segmentation(index):
    size = 128
    scene = render_scene("shapes", row_seed(11, index), size)
    match = CAPTION.match(scene.caption)
    assert match, scene.caption
    named = [(match[f"c{i}"], match[f"s{i}"]) for i in range(3) if match[f"c{i}"]]
    centres = [_named_object_centre(scene.image, scene.segmentation, c, s) for c, s in named]
    if match["rel"]:
        _check_relation(match["rel"], centres[0], centres[1])
    if match["where0"]:
        _check_where(match["where0"], centres[0], size)
    if match["where2"]:
        _check_where(match["where2"], centres[2], size)
    # The map holds exactly the named classes plus background, and the background colour is in the picture.
    present = {tuple(c) for c in np.unique(scene.segmentation.reshape(-1, 3), axis=0)}
    assert present == {SEGMENT_CLASS_COLOURS["background"], *(SEGMENT_CLASS_COLOURS[s] for _, s in named)}
    background = np.all(scene.segmentation == 0, axis=-1)
    first_bg = NAMED_COLOURS[match["bg"]]
    corner_rows = scene.image[background]
    assert np.any(np.all(np.abs(corner_rows.astype(int) - first_bg) <= 2, axis=-1))
    # The ground truth agrees with the caption, object for object.
    objects = [o for o in scene.objects if o["class"] != "background"]
    assert [(o["colour"], o["class"]) for o in objects] == named


def test_hands_landmarks_lie_on_the_hand_and_handedness_is_consistent():
    sides = {"Left": set(), "Right": set()}
    for index in range(80):
        scene = render_scene("hands", row_seed(5, index), 128)
        hands = scene.hands
        assert all(len(h["landmarks"]) == 21 for h in hands)
        for hand in hands:
            assert f"{hand['handedness'].lower()} hand" in scene.caption
            points = np.array([[m["px"], m["py"]] for m in hand["landmarks"]])
            # Which side of the wrist->middle-knuckle axis the thumb base is on tells left from right.
            axis, thumb = points[9] - points[0], points[1] - points[0]
            sides[hand["handedness"]].add(bool(np.sign(axis[0] * thumb[1] - axis[1] * thumb[0]) > 0))
        if len(hands) == 1:
            points = np.rint([[m["px"], m["py"]] for m in hands[0]["landmarks"]]).astype(int)
            points = np.clip(points, 0, 127)
            on_hand = np.all(
                scene.segmentation[points[:, 1], points[:, 0]] == SEGMENT_CLASS_COLOURS["hand"], axis=-1
            )
            assert on_hand.all(), f"row {index}: landmarks {np.flatnonzero(~on_hand)} off the hand"
    assert len(sides["Left"]) == 1 and len(sides["Right"]) == 1 and sides["Left"] != sides["Right"]


def test_hands_condition_is_the_extractor_drawing_of_the_true_skeleton():
    from controlsprint.conditions.hands import draw_hands
    from controlsprint.data.synth.job import ground_truth_conditions, hand_points

    scene = render_scene("hands", row_seed(0, 1), 128)
    conditions = ground_truth_conditions(scene, ("hands", "segment", "gray"), {})
    assert np.array_equal(conditions["hands"], draw_hands(hand_points(scene), (128, 128)))
    assert conditions["hands"].any()
    assert np.array_equal(conditions["segment"], scene.segmentation)
    shapes = render_scene("shapes", row_seed(0, 0), 128)
    assert not ground_truth_conditions(shapes, ("hands",), {})["hands"].any()  # no hands: black


def test_datasets_load_dataset_reads_it(tmp_path, cli):
    out = tmp_path / "ds"
    code, _, err = cli(
        "synth", "--out", out, "--num", 12, "--kinds", "hands,shapes", "--shard-size", 5, "--no-progress"
    )
    assert code == 0, err
    script = (
        "import datasets, json, sys\n"
        "ds = datasets.load_dataset('parquet', data_dir=sys.argv[1])['train']\n"
        "row = ds[3]\n"
        "print(json.dumps({'n': ds.num_rows, 'cols': ds.column_names, 'size': list(row['image'].size),\n"
        "  'cond': type(row['conditioning_image']).__name__, 'text': row['text'], 'kind': row['kind']}))\n"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = _read_rows(out)
    assert seen["n"] == 12 and seen["size"] == [128, 128] and seen["cond"] == "PngImageFile"
    assert seen["cols"] == [
        "image", "conditioning_image", "conditioning_image_hands", "conditioning_image_segment",
        "conditioning_image_canny", "conditioning_image_gray", "text", "kind", "seed", "objects",
    ]  # fmt: skip
    assert seen["text"] == rows[3]["text"] and seen["kind"] == rows[3]["kind"] == "shapes"
    # conditioning_image is the first condition (hands), byte for byte
    assert all(r["conditioning_image"]["bytes"] == r["conditioning_image_hands"]["bytes"] for r in rows)


def test_single_condition_uses_only_the_plain_column(tmp_path, cli):
    out = tmp_path / "one"
    code, _, err = cli("synth", "--out", out, "--num", 3, "--conditions", "canny", "--no-progress")
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["condition_columns"] == {"canny": "conditioning_image"}
    assert manifest["columns"] == ["image", "conditioning_image", "text", "kind", "seed", "objects"]
    edges = decode_rgb(_read_rows(out)[0]["conditioning_image"]["bytes"])
    assert set(np.unique(edges)) <= {0, 255} and edges.any()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--kinds", "blobs"], "unknown synth kind 'blobs'"),
        (["--conditions", "depth"], "--conditions depth: synth provides segment, canny, gray, hands"),
        (["--size", "100"], "--size 100: must be a multiple of 8"),
        (["--num", "0"], "--num 0: must be at least 1"),
        (["--seed", "-1"], "--seed -1: must be a non-negative integer"),
        (["--workers", "0"], "--workers 0: must be at least 1"),
    ],
)
def test_bad_options_are_one_line_errors(cli, tmp_path, args, fragment):
    code, _, err = cli("synth", "--out", tmp_path / "x", "--num", "4", *args, "--no-progress")
    assert code == 2
    assert err.count("\n") == 1 and fragment in err, err


def test_existing_dataset_needs_resume_and_same_settings(cli, tmp_path):
    out = tmp_path / "ds"
    assert cli("synth", "--out", out, "--num", 4, "--no-progress")[0] == 0
    code, _, err = cli("synth", "--out", out, "--num", 4, "--no-progress")
    assert code == 2 and "already holds a dataset (complete); pass --resume" in err
    code, _, err = cli("synth", "--out", out, "--num", 5, "--resume", "--no-progress")
    assert code == 2 and "different settings (num differ)" in err
    code, out_text, _ = cli("synth", "--out", out, "--num", 4, "--resume", "--no-progress")
    assert code == 0 and "wrote 4 rows" in out_text


def test_unknown_kind_is_a_user_error():
    from controlsprint.data.synth import get_kind

    with pytest.raises(UserError, match="known: shapes, hands"):
        get_kind("motion-blur")
