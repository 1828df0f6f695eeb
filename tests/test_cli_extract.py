"""`controlsprint extract` as users run it: outputs, landmark JSON, bad inputs listed, exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli_process


@pytest.fixture
def good_dir(tmp_path, photos):
    folder = tmp_path / "good"
    folder.mkdir()
    for name in ("hand_thumb_up.jpg", "cat.jpg"):
        shutil.copy(photos / name, folder / name)
    (folder / "README.txt").write_text("not an image suffix: skipped, not an error\n")
    return folder


@pytest.fixture
def bad_inputs(tmp_path, photos):
    """name -> (path, fragment of the reason the CLI must give)."""
    folder = tmp_path / "bad"
    folder.mkdir()
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "truncated.jpg"
    data = (photos / "cat.jpg").read_bytes()
    truncated.write_bytes(data[: len(data) // 4])
    text = folder / "notes.png"
    text.write_text("hello\n")
    big = folder / "big.png"  # 958 x 1358 = 1.3 M pixels, refused with --max-pixels 1000000
    shutil.copy(photos / "business_person.png", big)
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    return {
        "empty": (empty, "empty file (0 bytes)"),
        "truncated": (truncated, "truncated or corrupt image"),
        "text": (text, "not an image"),
        "big": (big, "above the limit of 1000000"),
        "missing": (tmp_path / "missing.jpg", "no such file"),
        "empty_dir": (empty_dir, "directory holds no images"),
    }


def test_good_files_processed_bad_ones_listed_exit_2(cli, tmp_path, good_dir, bad_inputs):
    out = tmp_path / "out"
    bad_paths = [path for path, _ in bad_inputs.values()]
    code, stdout, stderr = cli(
        "extract", "canny", good_dir, *bad_paths, "--out", out, "--max-pixels", 1_000_000
    )
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["cat.png", "hand_thumb_up.png"]
    assert "wrote 2 condition image(s)" in stdout
    lines = stderr.strip().splitlines()
    assert lines[0] == f"controlsprint extract: {len(bad_inputs)} input(s) failed:"
    assert len(lines) == 1 + len(bad_inputs)
    for path, fragment in bad_inputs.values():
        matching = [line for line in lines[1:] if line.startswith(f"{path}: ")]
        assert len(matching) == 1 and fragment in matching[0], (path, lines)
    assert "Traceback" not in stderr


def test_all_good_exits_0_with_sizes_and_metadata(cli, tmp_path, good_dir):
    out = tmp_path / "out"
    code, stdout, stderr = cli("extract", "canny", good_dir, "--out", out, "--resolution", 256, "--blur", 3)
    assert code == 0, stderr
    with Image.open(out / "hand_thumb_up.png") as image:
        assert image.size == (312, 256) and image.mode == "RGB"
        assert image.text["controlsprint:extractor"] == "canny"
        assert json.loads(image.text["controlsprint:options"])["blur"] == 3
        assert image.text["controlsprint:source"] == "hand_thumb_up.jpg"
        assert set(np.unique(np.asarray(image))) == {0, 255}
    with Image.open(out / "cat.png") as image:
        assert image.size == (416, 256)


def test_comma_list_writes_per_extractor_folders_and_json(cli, tmp_path, good_dir):
    out = tmp_path / "out"
    code, stdout, stderr = cli(
        "extract", "canny,hands", good_dir, "--out", out, "--json", "--resolution", 256
    )
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "canny").iterdir()) == ["cat.png", "hand_thumb_up.png"]
    assert sorted(p.name for p in (out / "hands").iterdir()) == [
        "cat.json",
        "cat.png",
        "hand_thumb_up.json",
        "hand_thumb_up.png",
    ]
    record = json.loads((out / "hands" / "hand_thumb_up.json").read_text())
    assert record["extractor"] == "hands" and (record["width"], record["height"]) == (312, 256)
    assert record["source"].endswith("hand_thumb_up.jpg")
    assert len(record["landmarks"]) == 1 and len(record["landmarks"][0]["landmarks"]) == 21
    assert json.loads((out / "hands" / "cat.json").read_text())["landmarks"] == []
    assert "wrote 4 condition image(s) and 2 landmark JSON file(s)" in stdout


def test_same_stem_twice_fails_the_second_not_the_first(cli, tmp_path, photos):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(photos / "cat.jpg", first / "x.jpg")
    shutil.copy(photos / "hand_thumb_up.jpg", second / "x.jpg")
    code, _, stderr = cli("extract", "gray", first / "x.jpg", second / "x.jpg", "--out", tmp_path / "out")
    assert code == 2
    assert f"{second / 'x.jpg'}: output name 'x' is already taken by {first / 'x.jpg'}" in stderr
    with Image.open(tmp_path / "out" / "x.png") as image:
        assert image.size == (1024, 624)  # the cat, not overwritten by the hand


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["canny", "--json"], "--json writes landmarks, and none of canny has any"),
        (["hands", "--blur", "3"], "--blur does not apply to hands; it is an option of canny"),
        (["canny", "--blur", "4"], "canny: option blur=4 must be 0 (no blur) or an odd size"),
        (["canny", "--low-threshold", "300"], "high_threshold 200 is below low_threshold 300"),
        (["edges"], "unknown extractor 'edges'"),
        (["canny", "--resolution", "4"], "--resolution 4: must be at least 8"),
        (["canny", "--blur", "three"], "argument --blur: invalid int value: 'three'"),
    ],
)
def test_bad_command_lines_are_one_line_exit_2(tmp_path, photos, args, fragment):
    name, *options = args
    proc = run_cli_process("extract", name, photos / "cat.jpg", "--out", tmp_path / "out", *options)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert lines[0].startswith("controlsprint")
    assert not (tmp_path / "out").exists()


def test_pickle_only_sam_folder_refused_before_any_work(tmp_path, photos):
    folder = tmp_path / "sam"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "sam"}))
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x02")
    proc = run_cli_process(
        "extract", "segment", photos / "cat.jpg", "--out", tmp_path / "out", "--sam-model", folder
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"controlsprint extract: error: SAM model folder {folder}: only pickled weights (pytorch_model.bin); "
        "controlsprint never loads pickles, convert them to model.safetensors"
    )


def test_real_process_output_is_clean(tmp_path, photos):
    # As users see it: a bad file costs one stderr line; MediaPipe's native start-up logs are not shown.
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    proc = run_cli_process(
        "extract",
        "hands,segment",
        photos / "hand_thumb_up.jpg",
        empty,
        "--out",
        tmp_path / "out",
        "--resolution",
        128,
        env={"CONTROLSPRINT_SAM_MODEL": ""},  # the classical backend, whatever the caller's environment
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "controlsprint extract: segment: classical offline backend (OpenCV graph segmentation); for SAM pass "
        "--sam-model DIR or set CONTROLSPRINT_SAM_MODEL",
        "controlsprint extract: 1 input(s) failed:",
        f"{empty}: empty file (0 bytes), not an image",
    ]
    assert (tmp_path / "out" / "hands" / "hand_thumb_up.png").is_file()
    assert (tmp_path / "out" / "segment" / "hand_thumb_up.png").is_file()
