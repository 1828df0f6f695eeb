"""`data.crop`: random windows drawn per (data seed, step), the same for every key of a row."""

from __future__ import annotations

import numpy as np

from controlsprint.training.config import DataSection, RunSection, TrainConfig
from controlsprint.training.crops import random_crops


def _config(seed: int = 0) -> TrainConfig:
    return TrainConfig(data=DataSection(resolution=32, crop=8, seed=seed), run=RunSection(batch_size=4))


def test_crops_are_windows_shared_by_every_key_and_fixed_by_seed_and_step():
    pixels = np.arange(4 * 32 * 32 * 3, dtype=np.float32).reshape(4, 32, 32, 3)
    batch = {"pixels": pixels, "cond": pixels + 0.5, "ids": np.ones((4, 5), np.int32)}
    cropped = random_crops(batch, _config(), step=3, per_process=4)
    assert cropped["pixels"].shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(cropped["ids"], batch["ids"])  # captions are not cropped
    np.testing.assert_array_equal(cropped["cond"], cropped["pixels"] + 0.5)  # same window per row
    for row in range(4):  # each is a contiguous window of its own row
        corner = cropped["pixels"][row, 0, 0, 0]
        y, x = divmod(int(corner - row * 32 * 32 * 3) // 3, 32)
        np.testing.assert_array_equal(cropped["pixels"][row], pixels[row, y : y + 8, x : x + 8])
    again = random_crops(batch, _config(), step=3, per_process=4)
    np.testing.assert_array_equal(again["pixels"], cropped["pixels"])
    other_step = random_crops(batch, _config(), step=4, per_process=4)
    other_seed = random_crops(batch, _config(seed=1), step=3, per_process=4)
    assert not np.array_equal(other_step["pixels"], cropped["pixels"])
    assert not np.array_equal(other_seed["pixels"], cropped["pixels"])
