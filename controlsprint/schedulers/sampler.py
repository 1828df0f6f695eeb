"""`make_scheduler`: one frozen, jittable sampler object with the same API for DDIM, DPM-Solver++ 2M, Euler.

    sch = make_scheduler("dpm", schedule, 20)
    state = sch.init_state(latents.shape)
    latents = noise * sch.init_noise_sigma
    def body(i, carry):
        state, latents = carry
        model_input = sch.scale_model_input(state, latents, i)
        model_output = unet(model_input, sch.timesteps[i], ...)
        return sch.step(state, model_output, i, latents)
    state, latents = jax.lax.fori_loop(0, sch.num_inference_steps, body, (state, latents))

The object is a pytree: its tables are array leaves and its settings static metadata, so it can be
closed over or passed into `jax.jit` as an argument. All arithmetic is float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from controlsprint.errors import UserError
from controlsprint.schedulers import ddim, dpm, euler
from controlsprint.schedulers.base import SamplerState, broadcast_to_sample
from controlsprint.schedulers.schedule import SCHEDULER_NAMES, NoiseSchedule, sd15_schedule
from controlsprint.schedulers.timesteps import img2img_start_index

_RULES = {"ddim": ddim, "dpm": dpm, "euler": euler}
assert tuple(_RULES) == SCHEDULER_NAMES


@struct.dataclass
class Scheduler:
    """A sampler for a fixed number of inference steps; every method is pure and jittable.

    `i` is the step index into the full table (0 .. num_inference_steps - 1), a Python int or a traced
    int32; img2img runs i from `start_index(strength)` instead of 0.
    """

    timesteps: jax.Array  # (n,) float32: the timestep to condition the model on at step i
    input_divisor: jax.Array  # (n,) float32
    signal_scale: jax.Array  # (n+1,) float32
    noise_scale: jax.Array  # (n+1,) float32
    coefficients: dict[str, jax.Array]  # the update rule's per-step tables
    name: str = struct.field(pytree_node=False)  # "ddim" | "dpm" | "euler"
    prediction_type: str = struct.field(pytree_node=False)  # "epsilon" | "v_prediction" | "sample"
    num_inference_steps: int = struct.field(pytree_node=False)
    init_noise_sigma: float = struct.field(pytree_node=False)  # txt2img latents = noise * this
    clip_sample_range: float | None = struct.field(pytree_node=False)  # DDIM x0 clipping; None = off

    def init_state(self, latents_shape: tuple[int, ...], dtype=jnp.float32) -> SamplerState:
        """The state before the first step (for any start index); keep `dtype` float32 for fidelity."""
        keeps_x0 = _RULES[self.name].KEEPS_PREVIOUS_X0
        return SamplerState(
            step_count=jnp.zeros((), jnp.int32),
            previous_x0=jnp.zeros(latents_shape, dtype) if keeps_x0 else None,
        )

    def scale_model_input(self, state: SamplerState, sample: jax.Array, i) -> jax.Array:
        """What the model sees at step i: the sample itself, or sample / sqrt(sigma^2 + 1) for Euler."""
        del state  # part of the shared signature; no sampler here needs it
        return sample / self.input_divisor[i].astype(sample.dtype)

    def step(
        self, state: SamplerState, model_output: jax.Array, i, sample: jax.Array
    ) -> tuple[SamplerState, jax.Array]:
        """One denoising step from step i's noise level to step i+1's; returns (new_state, prev_sample).

        `model_output` is the (guided) prediction for `scale_model_input(state, sample, i)` at
        `timesteps[i]`; `sample` is the unscaled current latent. Computed and returned in float32.
        """
        model_output = jnp.asarray(model_output, jnp.float32)
        sample = jnp.asarray(sample, jnp.float32)
        return _RULES[self.name].step(self, state, model_output, jnp.asarray(i, jnp.int32), sample)

    def add_noise(self, original: jax.Array, noise: jax.Array, timestep_index) -> jax.Array:
        """`original` noised to the level the sampler expects *before* step `timestep_index`.

        img2img: `add_noise(x0, noise, start)` gives the starting latent. Inpainting: after step i,
        blend the known region with `add_noise(x0, noise, i + 1)`; index n returns `original` itself
        (fully denoised), so no branch is needed at the last step. The index may be a traced scalar or
        a (B,) array; the result is float32.
        """
        index = jnp.asarray(timestep_index, jnp.int32)
        original = jnp.asarray(original, jnp.float32)
        signal = broadcast_to_sample(self.signal_scale[index], original)
        level = broadcast_to_sample(self.noise_scale[index], original)
        return signal * original + level * jnp.asarray(noise, jnp.float32)

    def start_index(self, strength: float) -> int:
        """First step index for img2img/inpaint `strength` (a Python int: it sets the loop bounds)."""
        return img2img_start_index(self.num_inference_steps, strength)


def make_scheduler(name: str, schedule: NoiseSchedule | None, num_inference_steps: int) -> Scheduler:
    """Build sampler `name` ("ddim", "dpm", "euler") for `schedule` (None: SD1.5) and a step count."""
    if name not in _RULES:
        raise UserError(f"scheduler '{name}': must be one of {', '.join(SCHEDULER_NAMES)}")
    schedule = schedule if schedule is not None else sd15_schedule()
    steps = num_inference_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps={steps!r}: must be a whole number >= 1")
    if steps > schedule.num_train_timesteps:
        raise UserError(f"steps={steps}: must be at most num_train_timesteps={schedule.num_train_timesteps}")
    tables = _RULES[name].tables(schedule, steps)
    return Scheduler(
        timesteps=jnp.asarray(tables.timesteps, jnp.float32),
        input_divisor=jnp.asarray(tables.input_divisor, jnp.float32),
        signal_scale=jnp.asarray(tables.signal_scale, jnp.float32),
        noise_scale=jnp.asarray(tables.noise_scale, jnp.float32),
        coefficients={k: jnp.asarray(v, jnp.float32) for k, v in tables.coefficients.items()},
        name=name,
        prediction_type=schedule.prediction_type,
        num_inference_steps=steps,
        init_noise_sigma=tables.init_noise_sigma,
        clip_sample_range=float(schedule.clip_sample_range) if schedule.clip_sample else None,
    )
