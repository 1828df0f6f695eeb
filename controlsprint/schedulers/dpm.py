"""DPM-Solver++ 2M (Lu et al. 2022): a second-order multistep solver in the data-prediction form.

Working in lambda = log(alpha / sigma), one step from s to t (h = lambda_t - lambda_s) is
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^-h - 1) (D0 + D1 / 2),  D1 = (h / h_prev) (x0_s - x0_prev)
with the midpoint correction D1 taken from the previous step's x0 prediction. Like diffusers
(`algorithm_type="dpmsolver++"`, `solver_order=2`, `solver_type="midpoint"`, `final_sigmas_type="zero"`)
it falls back to the first-order step (which is DDIM) on the first step it takes (also mid-schedule,
for img2img) and on the last step, which lands on sigma = 0 and would otherwise be unstable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from controlsprint.schedulers.base import SamplerState, SamplerTables, float32, vp_x0
from controlsprint.schedulers.schedule import NoiseSchedule
from controlsprint.schedulers.timesteps import dpm_timesteps_and_sigmas

if TYPE_CHECKING:
    from controlsprint.schedulers.sampler import Scheduler

KEEPS_PREVIOUS_X0 = True


def tables(schedule: NoiseSchedule, n: int) -> SamplerTables:
    timesteps, sigmas = dpm_timesteps_and_sigmas(schedule, n)
    one = np.float32(1.0)
    # float32 throughout, in diffusers' order of operations; lambda at the final sigma = 0 is +inf,
    # which gives the exact limits (ratio 0, e^-h = 0) of the last, first-order step.
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = one / np.sqrt(sigmas * sigmas + one)
        sigma = sigmas * alpha
        lam = np.log(alpha) - np.log(sigma)
        h = lam[1:] - lam[:-1]
        ratio = sigma[1:] / sigma[:-1]
        phi = alpha[1:] * (np.exp(-h) - one)
        inv_r0 = np.zeros(n, np.float32)
        inv_r0[1:] = one / ((lam[1:-1] - lam[:-2]) / h[1:])
    # Steps where second order is never taken (the first table entry, the final step) may hold inf/nan.
    inv_r0 = np.where(np.isfinite(inv_r0), inv_r0, 0).astype(np.float32)
    return SamplerTables(
        timesteps=float32(timesteps),
        input_divisor=np.ones(n, np.float32),
        signal_scale=alpha,
        noise_scale=sigma,
        coefficients={
            "alpha": alpha[:-1],
            "sigma": sigma[:-1],
            "ratio": ratio.astype(np.float32),
            "phi": phi.astype(np.float32),
            "inv_r0": inv_r0,
        },
        init_noise_sigma=1.0,
    )


def step(
    sch: Scheduler, state: SamplerState, model_output: jax.Array, i: jax.Array, sample: jax.Array
) -> tuple[SamplerState, jax.Array]:
    c = {name: table[i] for name, table in sch.coefficients.items()}
    x0 = vp_x0(sch.prediction_type, model_output, sample, c["alpha"], c["sigma"])
    first_order = c["ratio"] * sample - c["phi"] * x0
    correction = 0.5 * c["phi"] * (c["inv_r0"] * (x0 - state.previous_x0))
    second_order_ok = (state.step_count > 0) & (i < sch.num_inference_steps - 1)
    prev_sample = jnp.where(second_order_ok, first_order - correction, first_order)
    # Keep the carried dtype stable (init_state's dtype) so the state fits a fori_loop carry.
    new_state = SamplerState(step_count=state.step_count + 1, previous_x0=x0.astype(state.previous_x0.dtype))
    return new_state, prev_sample
