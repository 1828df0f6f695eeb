"""The forward (noising) process for training: noisy inputs and the regression target per timestep.

For integer training timesteps t, x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, and the
model learns the noise (epsilon), the velocity v = sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) x0
(v_prediction), or x0 itself (sample), as the schedule's `prediction_type` says. Equal to diffusers'
`DDPMScheduler.add_noise` / `get_velocity`, which the reference training scripts use.

`schedule` is static (hashable config); `t` may be traced, so these work inside a jitted train step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from controlsprint.schedulers.base import broadcast_to_sample
from controlsprint.schedulers.schedule import NoiseSchedule, alphas_cumprod


def _scales(schedule: NoiseSchedule, t, like: jax.Array) -> tuple[jax.Array, jax.Array]:
    ac = alphas_cumprod(schedule)
    # sqrt in float32, as torch computes alphas_cumprod ** 0.5 for the reference.
    signal = jnp.asarray(np.sqrt(ac))[jnp.asarray(t, jnp.int32)]
    noise = jnp.asarray(np.sqrt(np.float32(1.0) - ac))[jnp.asarray(t, jnp.int32)]
    return broadcast_to_sample(signal, like), broadcast_to_sample(noise, like)


def add_noise(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t) -> jax.Array:
    """x_t for clean samples `x0` (B, ...), `noise` like x0, integer timesteps `t` (B,) or scalar."""
    signal, level = _scales(schedule, t, x0)
    return signal * x0 + level * noise


def velocity(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t) -> jax.Array:
    """The v-prediction target sqrt(alpha_bar_t) noise - sqrt(1 - alpha_bar_t) x0."""
    signal, level = _scales(schedule, t, x0)
    return signal * noise - level * x0


def training_target(schedule: NoiseSchedule, x0: jax.Array, noise: jax.Array, t) -> jax.Array:
    """What the model should output at x_t: chosen by `schedule.prediction_type` (a static choice)."""
    if schedule.prediction_type == "epsilon":
        return noise
    if schedule.prediction_type == "v_prediction":
        return velocity(schedule, x0, noise, t)
    return x0


def sample_timesteps(
    schedule: NoiseSchedule, rng: jax.Array, batch_size: int, bias: str = "uniform"
) -> jax.Array:
    """Training timesteps in [0, num_train_timesteps), int32, shape (batch_size,).

    bias "uniform": every timestep equally often. "cubic": t = (1 - u^3) T for uniform u, as
    T2I-Adapter trains its adapters: most samples at high noise, where a picture's layout is decided
    and a control signal has the most to say (half of them above 0.875 T, one in five below T/2).
    """
    if bias == "uniform":
        return jax.random.randint(rng, (batch_size,), 0, schedule.num_train_timesteps, dtype=jnp.int32)
    if bias == "cubic":
        u = jax.random.uniform(rng, (batch_size,))
        t = jnp.floor((1.0 - u**3) * schedule.num_train_timesteps).astype(jnp.int32)
        return jnp.clip(t, 0, schedule.num_train_timesteps - 1)
    raise ValueError(f"timestep bias must be 'uniform' or 'cubic', got {bias!r}")


def min_snr_weights(schedule: NoiseSchedule, t, gamma: float) -> jax.Array:
    """Min-SNR-gamma loss weights per timestep: min(SNR, gamma) / SNR for epsilon targets, divided by
    SNR + 1 instead for v-prediction and left as min(SNR, gamma) for x0 targets (the paper's forms)."""
    ac = alphas_cumprod(schedule).astype(np.float64)
    snr = jnp.asarray((ac / (1.0 - ac)).astype(np.float32))[jnp.asarray(t, jnp.int32)]
    clipped = jnp.minimum(snr, gamma)
    if schedule.prediction_type == "epsilon":  # -> 1 as SNR -> 0 (a zero-terminal-SNR step's limit)
        return jnp.where(snr > 0, clipped / jnp.where(snr > 0, snr, 1.0), 1.0)
    if schedule.prediction_type == "v_prediction":
        return clipped / (snr + 1.0)
    return clipped
