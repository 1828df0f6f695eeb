"""DDIM with eta = 0 (Song et al. 2021): a deterministic first-order step between training timesteps.

Each step predicts x0 and the noise from the model output, then re-noises x0 to the previous
timestep's level: x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev) * eps. The previous timestep is
t - T // n whatever the spacing, as in diffusers; below zero it uses `final_alpha_cumprod`
(1 with set_alpha_to_one, else alphas_cumprod[0]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from controlsprint.schedulers.base import SamplerState, SamplerTables, float32, vp_noise, vp_x0
from controlsprint.schedulers.schedule import NoiseSchedule, alphas_cumprod
from controlsprint.schedulers.timesteps import ddim_timesteps

if TYPE_CHECKING:
    from controlsprint.schedulers.sampler import Scheduler

KEEPS_PREVIOUS_X0 = False


def tables(schedule: NoiseSchedule, n: int) -> SamplerTables:
    timesteps = ddim_timesteps(schedule, n)
    ac = alphas_cumprod(schedule)
    final_alpha = np.float32(1.0) if schedule.set_alpha_to_one else ac[0]
    previous = timesteps - schedule.num_train_timesteps // n
    a_t = ac[timesteps]
    a_prev = np.where(previous >= 0, ac[np.maximum(previous, 0)], final_alpha).astype(np.float32)
    one = np.float32(1.0)
    alpha, sigma = np.sqrt(a_t), np.sqrt(one - a_t)
    return SamplerTables(
        timesteps=float32(timesteps),
        input_divisor=np.ones(n, np.float32),
        signal_scale=float32(np.append(alpha, 1.0)),
        noise_scale=float32(np.append(sigma, 0.0)),
        coefficients={
            "alpha": alpha,
            "sigma": sigma,
            "alpha_prev": np.sqrt(a_prev),
            "sigma_prev": np.sqrt(one - a_prev),
        },
        init_noise_sigma=1.0,
    )


def step(
    sch: Scheduler, state: SamplerState, model_output: jax.Array, i: jax.Array, sample: jax.Array
) -> tuple[SamplerState, jax.Array]:
    c = {name: table[i] for name, table in sch.coefficients.items()}
    x0 = vp_x0(sch.prediction_type, model_output, sample, c["alpha"], c["sigma"])
    noise = vp_noise(sch.prediction_type, model_output, sample, x0, c["alpha"], c["sigma"])
    if sch.clip_sample_range is not None:  # static: a config option, not a traced value
        x0 = jnp.clip(x0, -sch.clip_sample_range, sch.clip_sample_range)
    prev_sample = c["alpha_prev"] * x0 + c["sigma_prev"] * noise
    return state.replace(step_count=state.step_count + 1), prev_sample
