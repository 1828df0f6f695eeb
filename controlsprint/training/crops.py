"""Random crop windows of a training batch (`data.crop`): deterministic per (data seed, step)."""

from __future__ import annotations

import jax
import numpy as np

from controlsprint.training.config import TrainConfig


def random_crops(batch: dict, cfg: TrainConfig, step: int, per_process: int) -> dict:
    """Crop windows drawn for the whole global batch from (data seed, step), so every process and every
    resumed run crops a sample the same way; this process takes its own rows' windows."""
    size, crop = cfg.data.resolution, cfg.data.crop
    global_offsets = np.random.default_rng([cfg.data.seed, step, 7]).integers(
        0, size - crop + 1, (cfg.run.batch_size, 2)
    )
    offsets = global_offsets[jax.process_index() * per_process : (jax.process_index() + 1) * per_process]
    cropped = {}
    for key, value in batch.items():
        if key == "ids":
            cropped[key] = value
            continue
        cropped[key] = np.stack(
            [v[y : y + crop, x : x + crop] for v, (y, x) in zip(value, offsets, strict=True)]
        )
    return cropped
