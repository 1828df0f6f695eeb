"""Noise schedules and samplers: DDIM, DPM-Solver++ 2M and Euler as pure, jittable functions.

Importing this package is cheap (numpy only): `NoiseSchedule`, `SCHEDULER_NAMES` and friends come
from `schedule.py`. The JAX parts load on first use: `make_scheduler`/`Scheduler`/`SamplerState`
(from `sampler.py`) and the training utilities `add_noise`, `velocity`, `training_target`,
`sample_timesteps`, `min_snr_weights` (from `training.py`). See docs/schedulers.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from controlsprint.schedulers.schedule import (
    SCHEDULER_NAMES,
    SD15_SCHEDULER_CONFIG,
    ZERO_SNR_V_SCHEDULER_CONFIG,
    NoiseSchedule,
    alphas_cumprod,
    from_diffusers_config,
    load_noise_schedule,
    sd15_schedule,
)
from controlsprint.schedulers.timesteps import img2img_start_index

# Names served lazily (PEP 562) so that `import controlsprint.schedulers` does not import jax.
_LAZY = {
    "make_scheduler": "sampler",
    "Scheduler": "sampler",
    "SamplerState": "base",
    "add_noise": "training",
    "velocity": "training",
    "training_target": "training",
    "sample_timesteps": "training",
    "min_snr_weights": "training",
}

__all__ = [
    "SCHEDULER_NAMES",
    "SD15_SCHEDULER_CONFIG",
    "ZERO_SNR_V_SCHEDULER_CONFIG",
    "NoiseSchedule",
    "alphas_cumprod",
    "from_diffusers_config",
    "img2img_start_index",
    "load_noise_schedule",
    "sd15_schedule",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"controlsprint.schedulers.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'controlsprint.schedulers' has no attribute '{name}'")
