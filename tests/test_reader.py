"""`ShardedDataset`: deterministic order, exact process partition, exact resume, one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from controlsprint.data import format as fmt
from controlsprint.data.codec import decode_rgb
from controlsprint.data.pipeline import run_job
from controlsprint.data.reader import ShardedDataset
from controlsprint.data.synth.job import make_synth_job
from controlsprint.errors import UserError

NUM_ROWS = 37


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("reader") / "ds"
    job = make_synth_job(
        out,
        num=NUM_ROWS,
        size=64,
        seed=1,
        kinds=("shapes", "hands"),
        conditions=("segment", "canny"),
        shard_size=10,
    )
    run_job(job, progress=False)
    return out


def _texts_in_file_order(directory) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [
        t
        for s in manifest["shards"]
        for t in pq.read_table(directory / s["file"], columns=["text"])["text"].to_pylist()
    ]


def test_one_epoch_is_a_permutation_and_order_is_deterministic(dataset_dir):
    ds = ShardedDataset(dataset_dir)
    assert ds.num_rows == NUM_ROWS and ds.condition_names == ("segment", "canny")
    texts = _texts_in_file_order(dataset_dir)
    epoch = []
    batches = ds.batches(4, seed=7, resolution=32, drop_remainder=True)
    for _ in range(NUM_ROWS // 4):
        epoch.extend(next(batches)["text"])
    expected_rows = np.random.default_rng([7, 0]).permutation(NUM_ROWS)[: 4 * (NUM_ROWS // 4)]
    assert epoch == [texts[i] for i in expected_rows]
    again = ds.batches(4, seed=7, resolution=32)
    assert [t for _ in range(NUM_ROWS // 4) for t in next(again)["text"]] == epoch
    other = ds.batches(4, seed=8, resolution=32)
    assert [t for _ in range(NUM_ROWS // 4) for t in next(other)["text"]] != epoch
    # the next epoch is a fresh permutation, and epochs go on forever
    second = [next(batches) for _ in range(NUM_ROWS // 4)]
    assert second[0]["step"] == NUM_ROWS // 4
    assert [t for b in second for t in b["text"]] != epoch


def test_process_slices_partition_the_global_batch(dataset_dir):
    ds = ShardedDataset(dataset_dir)
    single = ds.batches(6, seed=3, resolution=32)
    procs = [ds.batches(2, seed=3, resolution=32, process_index=p, process_count=3) for p in range(3)]
    for step in range(8):  # crosses the epoch boundary (6 steps per epoch)
        whole = next(single)
        parts = [next(p) for p in procs]
        assert all(p["step"] == whole["step"] == step for p in parts)
        assert [t for p in parts for t in p["text"]] == whole["text"]
        np.testing.assert_array_equal(
            np.concatenate([p["pixel_values"] for p in parts]), whole["pixel_values"]
        )


def test_start_step_equals_skipping(dataset_dir, monkeypatch):
    ds = ShardedDataset(dataset_dir)
    reference = ds.batches(5, seed=2, resolution=32, condition="canny")
    for _ in range(11):
        next(reference)
    expected = [next(reference) for _ in range(3)]
    reference.close()
    fresh = ShardedDataset(dataset_dir)  # its own instance: the reference's prefetch thread cannot count
    decoded: list[int] = []
    original = fresh.read_rows
    monkeypatch.setattr(fresh, "read_rows", lambda idx, cols: decoded.append(len(idx)) or original(idx, cols))
    resumed = fresh.batches(5, seed=2, resolution=32, condition="canny", start_step=11)
    got = [next(resumed) for _ in range(3)]
    # no skipped row is read: 3 consumed + 2 queued (prefetch) + 1 waiting to be queued
    assert decoded[0] == 5 and len(decoded) <= 3 + 2 + 1
    for a, b in zip(got, expected, strict=True):
        assert a["step"] == b["step"] and a["text"] == b["text"]
        np.testing.assert_array_equal(a["pixel_values"], b["pixel_values"])
        np.testing.assert_array_equal(a["conditioning_pixel_values"], b["conditioning_pixel_values"])


def test_batch_values_are_the_stored_pictures(dataset_dir):
    ds = ShardedDataset(dataset_dir)
    batch = next(ds.batches(3, seed=0, resolution=64, condition="canny"))
    assert batch["pixel_values"].shape == (3, 64, 64, 3) and batch["pixel_values"].dtype == np.float32
    assert batch["conditioning_pixel_values"].shape == (3, 64, 64, 3)
    rows = np.random.default_rng([0, 0]).permutation(NUM_ROWS)[:3]
    raw = ds.read_rows(rows, ["image", "conditioning_image_canny"])
    for i in range(3):
        image = decode_rgb(raw["image"][i]).astype(np.float32)
        np.testing.assert_allclose(batch["pixel_values"][i], image / 127.5 - 1.0, atol=1e-6)
        edges = decode_rgb(raw["conditioning_image_canny"][i]).astype(np.float32) / 255.0
        np.testing.assert_array_equal(batch["conditioning_pixel_values"][i], edges)
    assert batch["pixel_values"].min() >= -1.0 and batch["pixel_values"].max() <= 1.0
    default = next(ds.batches(3, seed=0, resolution=64))  # default = first condition (segment)
    segment = ds.read_rows(rows, ["conditioning_image_segment"])["conditioning_image_segment"]
    np.testing.assert_array_equal(
        default["conditioning_pixel_values"][0], decode_rgb(segment[0]) / np.float32(255)
    )


def test_resize_and_centre_crop(dataset_dir):
    ds = ShardedDataset(dataset_dir)
    batch = next(ds.batches(2, seed=0, resolution=24))
    assert batch["pixel_values"].shape == (2, 24, 24, 3)


def test_last_partial_batch_without_drop_remainder(dataset_dir):
    ds = ShardedDataset(dataset_dir)
    stream = ds.batches(10, seed=4, resolution=16, drop_remainder=False)
    sizes = [len(next(stream)["text"]) for _ in range(5)]
    assert sizes == [10, 10, 10, 7, 10]


def test_errors_name_the_input(tmp_path, dataset_dir):
    with pytest.raises(UserError, match="does not exist"):
        ShardedDataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="has no manifest.json"):
        ShardedDataset(tmp_path / "empty")
    ds = ShardedDataset(dataset_dir)
    with pytest.raises(UserError, match="condition 'hands' is not in .* it has segment, canny"):
        ds.batches(2, seed=0, resolution=16, condition="hands")
    with pytest.raises(UserError, match="fewer than one global batch of 40"):
        ds.batches(20, seed=0, resolution=16, process_count=2)
    broken = tmp_path / "broken"
    shutil.copytree(dataset_dir, broken)
    table = pq.read_table(broken / "data" / "train-00000-of-00004.parquet").drop_columns(["text"])
    pq.write_table(table, broken / "data" / "train-00000-of-00004.parquet")
    with pytest.raises(UserError, match=r"train-00000-of-00004.parquet: missing column\(s\) text"):
        ShardedDataset(broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["complete"] = False
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="is incomplete .*--resume"):
        ShardedDataset(broken)


def test_concurrent_streams_of_one_dataset_agree_with_sequential_ones(dataset_dir):
    import threading

    ds = ShardedDataset(dataset_dir)

    def texts(seed: int, out: dict) -> None:
        stream = ds.batches(4, seed=seed, resolution=16)
        out[seed] = [t for _ in range(20) for t in next(stream)["text"]]
        stream.close()

    sequential: dict = {}
    for seed in range(4):
        texts(seed, sequential)
    concurrent: dict = {}
    threads = [threading.Thread(target=texts, args=(seed, concurrent)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert concurrent == sequential


def test_batches_without_images_skip_the_image_column_and_name_their_rows(dataset_dir, monkeypatch):
    ds = ShardedDataset(dataset_dir)
    full = ds.batches(4, seed=5, resolution=32, condition="canny")
    expected = [next(full) for _ in range(3)]
    full.close()
    lean = ShardedDataset(dataset_dir)
    columns_read: list[list[str]] = []
    original = lean.read_rows
    monkeypatch.setattr(lean, "read_rows", lambda idx, cols: columns_read.append(cols) or original(idx, cols))
    batches = lean.batches(4, seed=5, resolution=32, condition="canny", images=False)
    got = [next(batches) for _ in range(3)]
    batches.close()
    assert all(fmt.IMAGE_COLUMN not in cols for cols in columns_read)
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert "pixel_values" not in a and "pixel_values" in b
        np.testing.assert_array_equal(a["rows"], b["rows"])
        np.testing.assert_array_equal(a["rows"], ds.global_batch_indices(step, 4, seed=5))
        np.testing.assert_array_equal(a["conditioning_pixel_values"], b["conditioning_pixel_values"])
        assert a["text"] == b["text"]
    # the rows are what images_and_texts reads back: the same pixels the full batch decoded
    pixels, texts = ds.images_and_texts(got[1]["rows"], resolution=32)
    np.testing.assert_array_equal(pixels, expected[1]["pixel_values"])
    assert texts == expected[1]["text"]


def test_foreground_masks_are_the_lit_pixels_of_the_named_condition(dataset_dir):
    """`foreground=`: 1 where the segment map is not black (every shape and hand), from the segment
    column even when the batch's condition is canny; the same rows as a batch without it."""
    ds = ShardedDataset(dataset_dir)
    plain = next(ds.batches(4, seed=2, resolution=64, condition="canny"))
    batch = next(ds.batches(4, seed=2, resolution=64, condition="canny", foreground="segment"))
    np.testing.assert_array_equal(batch["rows"], plain["rows"])
    np.testing.assert_array_equal(batch["conditioning_pixel_values"], plain["conditioning_pixel_values"])
    segment = ds.read_rows(batch["rows"], ["conditioning_image_segment"])["conditioning_image_segment"]
    expected = np.stack([decode_rgb(s).max(axis=-1) > 0 for s in segment]).astype(np.float32)
    assert batch["foreground"].shape == (4, 64, 64) and batch["foreground"].dtype == np.float32
    np.testing.assert_array_equal(batch["foreground"], expected)
    assert 0.0 < expected.mean() < 0.5  # shapes and hands on a black background
    same = next(ds.batches(4, seed=2, resolution=64, foreground="segment"))  # batch condition = segment
    np.testing.assert_array_equal(same["foreground"], expected)
    with pytest.raises(UserError, match="condition 'hands' is not in"):
        ds.batches(2, seed=0, resolution=16, foreground="hands")
