"""Pieces every sampler shares: its numpy tables, its loop state, and the x0/noise conversions.

A sampler is a set of per-step tables built once in numpy (float32, mirroring diffusers' arithmetic so
results agree to float32 rounding) plus a pure update rule that indexes them with a possibly traced
step index. No Python branch ever looks at a traced value, so a whole denoising loop fits in one
`lax.fori_loop`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@dataclasses.dataclass(frozen=True)
class SamplerTables:
    """What a sampler precomputes for `n` inference steps (numpy, float32)."""

    timesteps: np.ndarray  # (n,) the model's conditioning timestep per step
    input_divisor: np.ndarray  # (n,) the model sees sample / input_divisor[i] (Euler's sqrt(sigma^2+1))
    signal_scale: np.ndarray  # (n+1,) add_noise at index k: signal_scale[k] * x0 + noise_scale[k] * noise;
    noise_scale: np.ndarray  # (n+1,) index n is "fully denoised": signal 1, noise 0
    coefficients: dict[str, np.ndarray]  # the update rule's own per-step tables
    init_noise_sigma: float  # std of the starting latents for txt2img (noise * init_noise_sigma)


@struct.dataclass
class SamplerState:
    """The loop-carried state of a sampler (a pytree of arrays)."""

    step_count: jax.Array  # int32 scalar: steps taken so far (multistep solvers start at first order)
    previous_x0: jax.Array | None = None  # DPM-Solver++: the data prediction of the previous step


def float32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def vp_x0(prediction_type: str, model_output: jax.Array, sample: jax.Array, alpha, sigma) -> jax.Array:
    """The predicted clean sample x0 for a variance-preserving x_t = alpha * x0 + sigma * noise."""
    if prediction_type == "epsilon":
        return (sample - sigma * model_output) / alpha
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * model_output
    return model_output  # "sample": the model predicts x0 itself


def vp_noise(
    prediction_type: str, model_output: jax.Array, sample: jax.Array, x0: jax.Array, alpha, sigma
) -> jax.Array:
    """The predicted noise for the same parametrisation (x0 as returned by `vp_x0`, before clipping)."""
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return alpha * model_output + sigma * sample
    return (sample - alpha * x0) / sigma


def broadcast_to_sample(scale: jax.Array, sample: jax.Array) -> jax.Array:
    """Scalar or per-batch (B,) scales reshaped to multiply a (B, ...) sample."""
    scale = jnp.asarray(scale)
    return scale.reshape(scale.shape + (1,) * (sample.ndim - scale.ndim))
