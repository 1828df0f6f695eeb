"""Euler (Karras et al. 2022, Algorithm 2 without churn): first-order steps of the probability-flow ODE.

This sampler works in the variance-exploding parametrisation x = x0 + sigma * noise, whose latents are
sqrt(sigma^2 + 1) times larger than the model was trained on. So the model input is divided by
sqrt(sigma^2 + 1), txt2img starts from noise * init_noise_sigma, and a step moves along the ODE
direction d = (x - x0) / sigma from sigma_i to sigma_{i+1}. Matches diffusers' EulerDiscreteScheduler
(discrete timesteps, "linear" sigma interpolation, final sigma zero, s_churn = 0).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import numpy as np

from controlsprint.schedulers.base import SamplerState, SamplerTables
from controlsprint.schedulers.schedule import NoiseSchedule
from controlsprint.schedulers.timesteps import euler_timesteps_and_sigmas

if TYPE_CHECKING:
    from controlsprint.schedulers.sampler import Scheduler

KEEPS_PREVIOUS_X0 = False


def tables(schedule: NoiseSchedule, n: int) -> SamplerTables:
    timesteps, sigmas = euler_timesteps_and_sigmas(schedule, n)
    one = np.float32(1.0)
    largest = sigmas.max()
    # "leading" spacing never reaches the noisiest training step, so diffusers scales the start noise to
    # the VE latent's full std sqrt(sigma_max^2 + 1); linspace/trailing use sigma_max itself.
    spacing = schedule.timestep_spacing or "linspace"
    init_sigma = largest if spacing in ("linspace", "trailing") else np.sqrt(largest * largest + one)
    return SamplerTables(
        timesteps=timesteps,
        input_divisor=np.sqrt(sigmas[:-1] * sigmas[:-1] + one),
        signal_scale=np.ones(n + 1, np.float32),
        noise_scale=sigmas,
        coefficients={"sigma": sigmas[:-1], "sigma_next": sigmas[1:]},
        init_noise_sigma=float(init_sigma),
    )


def _x0(prediction_type: str, model_output: jax.Array, sample: jax.Array, sigma) -> jax.Array:
    if prediction_type == "epsilon":
        return sample - sigma * model_output
    if prediction_type == "v_prediction":
        # The VP velocity, rescaled to the VE latent: c_out = -sigma / sqrt(sigma^2+1), c_skip = 1/(sigma^2+1).
        return model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1)
    return model_output


def step(
    sch: Scheduler, state: SamplerState, model_output: jax.Array, i: jax.Array, sample: jax.Array
) -> tuple[SamplerState, jax.Array]:
    sigma, sigma_next = sch.coefficients["sigma"][i], sch.coefficients["sigma_next"][i]
    x0 = _x0(sch.prediction_type, model_output, sample, sigma)
    derivative = (sample - x0) / sigma
    prev_sample = sample + derivative * (sigma_next - sigma)
    return state.replace(step_count=state.step_count + 1), prev_sample
