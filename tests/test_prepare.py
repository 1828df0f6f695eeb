"""`controlsprint prepare`: real photos plus broken files, rejects, resume after SIGKILL, dataset inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from controlsprint.data.codec import decode_rgb
from tests.conftest import REPO, sigint_live

PHOTOS = [
    "business_person.png",
    "cat.jpg",
    "couple_and_dog.jpg",
    "dinner_table.jpg",
    "hand_thumb_up.jpg",
    "two_thumbs_up.jpg",
]


def _rows(directory) -> list[dict]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [r for s in manifest["shards"] for r in pq.read_table(directory / s["file"]).to_pylist()]


def _folder_with_bad_files(photos, root):
    root.mkdir()
    for name in PHOTOS:
        shutil.copy(photos / name, root / name)
    (root / "empty.jpg").write_bytes(b"")
    jpeg = (photos / "cat.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (root / "notes.png").write_text("this is not a picture\n")
    (root / "README.md").write_text("not an image suffix: ignored, not rejected\n")
    captions = {"cat.jpg": "a cat on a sofa", "hand_thumb_up.jpg": "a hand giving a thumbs up"}
    (root / "metadata.jsonl").write_text(
        "".join(json.dumps({"file_name": k, "text": v}) + "\n" for k, v in captions.items())
    )
    return captions


def test_prepare_keeps_good_rows_and_lists_rejects(cli, photos, tmp_path):
    from controlsprint.conditions import get_extractor
    from controlsprint.imageio import load_image

    captions = _folder_with_bad_files(photos, tmp_path / "in")
    out = tmp_path / "out"
    code, stdout, stderr = cli(
        "prepare", "--images", tmp_path / "in", "--conditions", "canny,gray", "--out", out,
        "--resolution", 128, "--shard-size", 3, "--no-progress",
    )  # fmt: skip
    assert code == 0, stderr
    assert "prepared 6 rows (canny, gray) in 3 shards" in stdout
    assert f"3 rejected, listed in {out}/rejects.jsonl" in stdout
    assert "7 of 9 images have no caption" in stderr  # the 3 bad files count as images until read
    rejects = {r["source"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    assert set(rejects) == {"empty.jpg", "truncated.jpg", "notes.png"}
    assert "empty file (0 bytes)" in rejects["empty.jpg"]["reason"]
    assert "truncated or corrupt" in rejects["truncated.jpg"]["reason"]
    assert "not an image" in rejects["notes.png"]["reason"]
    rows = _rows(out)
    assert [r["source"] for r in rows] == sorted(PHOTOS)
    canny = get_extractor("canny")
    for row in rows:
        source = load_image(tmp_path / "in" / row["source"])
        expected = canny.extract(source, resolution=128).image
        assert min(expected.shape[:2]) == 128
        np.testing.assert_array_equal(decode_rgb(row["conditioning_image_canny"]["bytes"]), expected)
        assert decode_rgb(row["image"]["bytes"]).shape == expected.shape
        assert row["conditioning_image"]["bytes"] == row["conditioning_image_canny"]["bytes"]
        assert row["text"] == captions.get(row["source"], "")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["num_rows"] == 6 and manifest["num_rejected"] == 3
    # input i lands in shard i // 3 whether or not it is rejected (sorted: empty.jpg is 5th, notes, truncated 7th, 8th)
    assert [s["rows"] for s in manifest["shards"]] == [3, 2, 1]
    # the rejects log beside the shards does not disturb `datasets`
    script = "import datasets, sys; ds = datasets.load_dataset('parquet', data_dir=sys.argv[1])['train']; print(ds.num_rows, ds[0]['source'])"
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["6", "business_person.png"]


def _prepare_args(src, out, workers):
    return ["prepare", "--images", src, "--conditions", "canny,gray", "--out", out, "--resolution", "96",
            "--shard-size", "2", "--workers", str(workers), "--no-progress"]  # fmt: skip


def test_resume_after_sigkill_gives_exactly_the_uninterrupted_rows(cli, photos, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for copy in range(5):
        for name in PHOTOS:
            shutil.copy(photos / name, src / f"{copy}_{name}")
    (src / "2_zero.jpg").write_bytes(b"")
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlsprint", *_prepare_args(src, killed, 2)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        manifest_path = killed / "manifest.json"
        if manifest_path.exists() and len(json.loads(manifest_path.read_text())["shards"]) >= 2:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the parent and its workers, mid-run
    proc.wait(timeout=60)
    state = json.loads((killed / "manifest.json").read_text())
    assert proc.returncode == -signal.SIGKILL and not state["complete"], "the run finished before the kill"
    assert 2 <= len(state["shards"]) < state["num_shards"]

    code, stdout, stderr = cli(*_prepare_args(src, killed, 2), "--resume")
    assert code == 0, stderr
    assert "shards kept from the interrupted run" in stdout
    reference = tmp_path / "reference"
    code, _, stderr = cli(*_prepare_args(src, reference, 1))
    assert code == 0, stderr

    assert _rows(killed) == _rows(reference)
    assert len(_rows(reference)) == 30
    shards_killed = json.loads((killed / "manifest.json").read_text())["shards"]
    shards_reference = json.loads((reference / "manifest.json").read_text())["shards"]
    assert [s["sha256"] for s in shards_killed] == [s["sha256"] for s in shards_reference]
    assert (killed / "rejects.jsonl").read_text() == (reference / "rejects.jsonl").read_text()
    assert len((reference / "rejects.jsonl").read_text().splitlines()) == 1
    assert not [p.name for p in (killed / "data").iterdir() if p.name.startswith(".")]  # no temp files left


def test_empty_hands_blank_or_skip(cli, photos, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("cat.jpg", "hand_thumb_up.jpg"):
        shutil.copy(photos / name, src / name)
    for policy in ("blank", "skip"):
        out = tmp_path / policy
        code, stdout, stderr = cli(
            "prepare", "--images", src, "--conditions", "hands", "--out", out, "--resolution", 256,
            "--empty-hands", policy, "--no-progress",
        )  # fmt: skip
        assert code == 0, stderr
        rows = {r["source"]: r for r in _rows(out)}
        hand = decode_rgb(rows["hand_thumb_up.jpg"]["conditioning_image"]["bytes"])
        assert hand.any()
        assert len(json.loads(rows["hand_thumb_up.jpg"]["landmarks"])["hands"]) >= 1
        if policy == "blank":
            assert set(rows) == {"cat.jpg", "hand_thumb_up.jpg"}
            assert not decode_rgb(rows["cat.jpg"]["conditioning_image"]["bytes"]).any()
            assert json.loads(rows["cat.jpg"]["landmarks"]) == {"hands": []}
        else:
            assert set(rows) == {"hand_thumb_up.jpg"}
            reject = json.loads((out / "rejects.jsonl").read_text())
            assert reject["source"] == "cat.jpg" and "no hand detected" in reject["reason"]
            assert "1 rejected" in stdout


def test_prepare_from_a_parquet_dataset_and_a_save_to_disk_dataset(cli, tmp_path):
    synth = tmp_path / "synth"
    assert cli("synth", "--out", synth, "--num", 7, "--shard-size", 3, "--no-progress")[0] == 0
    out = tmp_path / "from_parquet"
    code, stdout, stderr = cli(
        "prepare",
        "--dataset",
        synth,
        "--conditions",
        "gray",
        "--out",
        out,
        "--resolution",
        128,
        "--no-progress",
    )
    assert code == 0, stderr
    originals, rows = _rows(synth), _rows(out)
    assert [r["text"] for r in rows] == [r["text"] for r in originals]
    assert rows[4]["source"] == "data/train-00001-of-00003.parquet#1"
    np.testing.assert_array_equal(
        decode_rgb(rows[4]["image"]["bytes"]), decode_rgb(originals[4]["image"]["bytes"])
    )
    np.testing.assert_array_equal(  # the stored gray condition is the gray extractor's: the same either way
        decode_rgb(rows[4]["conditioning_image"]["bytes"]),
        decode_rgb(originals[4]["conditioning_image_gray"]["bytes"]),
    )

    import datasets

    table = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": r["image"]["bytes"], "path": None} for r in originals],
            "caption": [f"c{i}" for i in range(7)],
        },
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}),
    )
    saved = tmp_path / "saved"
    table.save_to_disk(str(saved))
    out2 = tmp_path / "from_arrow"
    code, _, stderr = cli(
        "prepare",
        "--dataset",
        saved,
        "--conditions",
        "canny",
        "--out",
        out2,
        "--resolution",
        64,
        "--no-progress",
    )
    assert code == 0, stderr
    assert [r["text"] for r in _rows(out2)] == [f"c{i}" for i in range(7)]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--images", "{tmp}/nope"], "--images {tmp}/nope: not a directory"),
        (["--images", "{tmp}", "--dataset", "{tmp}"], "give exactly one of --images DIR or --dataset PATH"),
        (
            ["--images", "{photos}", "--conditions", "canny,depth"],
            "--conditions canny,depth: known extractors are",
        ),
        (["--images", "{photos}", "--low-threshold", "-3"], "low_threshold=-3 must be at least 0"),
        (["--images", "{photos}", "--max-hands", "2"], "--max-hands does not apply to canny"),
        (
            ["--images", "{photos}", "--captions", "{tmp}/none.jsonl"],
            "--captions {tmp}/none.jsonl: no such file",
        ),
        (["--dataset", "{tmp}"], "no .parquet files"),
    ],
)
def test_user_mistakes_are_one_line_errors(cli, photos, tmp_path, args, fragment):
    fill = {"tmp": tmp_path, "photos": photos}
    argv = [a.format(**fill) for a in args]
    if "--conditions" not in argv:
        argv += ["--conditions", "canny"]
    code, _, err = cli("prepare", *argv, "--out", tmp_path / "out", "--no-progress")
    assert code == 2, err
    assert err.count("\n") == 1 and fragment.format(**fill) in err, err


def test_all_rejected_is_an_error_but_keeps_the_log(cli, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpg").write_bytes(b"")
    code, _, err = cli(
        "prepare", "--images", src, "--conditions", "gray", "--out", tmp_path / "out", "--no-progress"
    )
    assert code == 2 and "all 1 inputs were rejected" in err
    assert json.loads((tmp_path / "out" / "rejects.jsonl").read_text())["source"] == "a.jpg"


def test_ctrl_c_stops_cleanly_and_resume_finishes(cli, photos, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    # Enough that the job is still running when its first shard lands and the test (starved of CPU by
    # the two workers) gets to send the signal: with 20 copies a fast run could finish first.
    copies = 60
    for copy in range(copies):
        for name in PHOTOS:
            shutil.copy(photos / name, src / f"{copy}_{name}")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlsprint", *_prepare_args(src, out, 2)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=sigint_live,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "manifest.json").exists() and json.loads((out / "manifest.json").read_text())["shards"]:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal sends to the whole foreground group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "run the same command with --resume to continue" in stderr and "Traceback" not in stderr
    assert not json.loads((out / "manifest.json").read_text())["complete"]
    code, stdout, err = cli(*_prepare_args(src, out, 1), "--resume")
    assert code == 0, err
    assert len(_rows(out)) == copies * len(PHOTOS)
