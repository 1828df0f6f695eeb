"""Inference timestep and sigma tables, in numpy, laid out exactly as diffusers 0.39 lays them out.

Each sampler family picks its timesteps a little differently (DPM-Solver spaces n+1 points and drops
the last; Euler keeps fractional "linspace" timesteps and interpolates sigmas between training steps),
and a model's outputs depend on the exact timestep it is conditioned on, so we reproduce each rule
rather than sharing one. Everything here runs once per (schedule, steps), outside any jitted code.
"""

from __future__ import annotations

import numpy as np

from controlsprint.errors import UserError
from controlsprint.schedulers.schedule import NoiseSchedule, train_sigmas

KARRAS_RHO = 7.0  # Karras et al. 2022, eq. 5


def _checked(timesteps: np.ndarray, schedule: NoiseSchedule, n: int) -> np.ndarray:
    # Too many steps for the spacing (or a large steps_offset) pushes timesteps past the training chain,
    # which diffusers reports as an IndexError deep inside a step; say which setting caused it instead.
    if len(timesteps) != n or timesteps.min() < 0 or timesteps.max() > schedule.num_train_timesteps - 1:
        raise UserError(
            f"num_inference_steps={n}: gives timesteps outside 0..{schedule.num_train_timesteps - 1} "
            f"with timestep_spacing={schedule.timestep_spacing} and steps_offset={schedule.steps_offset}"
        )
    return timesteps


def _spaced_timesteps(schedule: NoiseSchedule, n: int, spacing: str) -> np.ndarray:
    """DDIM and Euler's rule: n timesteps over [0, T), descending, float64 (callers cast)."""
    big_t = schedule.num_train_timesteps
    if spacing == "linspace":
        return np.linspace(0, big_t - 1, n)[::-1].copy()
    if spacing == "leading":
        return (np.arange(0, n) * (big_t // n)).round()[::-1].astype(np.float64) + schedule.steps_offset
    # trailing: count down from T in steps of T/n, so the first step is the noisiest training step.
    return np.round(np.arange(big_t, 0, -big_t / n)) - 1


def ddim_timesteps(schedule: NoiseSchedule, n: int) -> np.ndarray:
    """DDIM's integer timesteps (int64), as `DDIMScheduler.set_timesteps` makes them."""
    spacing = schedule.timestep_spacing or "leading"
    timesteps = _spaced_timesteps(schedule, n, spacing)
    if spacing == "linspace":
        timesteps = timesteps.round()  # DDIM rounds linspace to integers; Euler does not
    return _checked(timesteps.astype(np.int64), schedule, n)


def karras_sigmas(sigma_min: float, sigma_max: float, n: int) -> np.ndarray:
    """n sigmas from sigma_max down to sigma_min, uniform in sigma^(1/rho) (denser near the clean end)."""
    ramp = np.linspace(0, 1, n)
    max_inv_rho = sigma_max ** (1 / KARRAS_RHO)
    min_inv_rho = sigma_min ** (1 / KARRAS_RHO)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** KARRAS_RHO


def sigma_to_timestep(sigmas: np.ndarray, log_train_sigmas: np.ndarray) -> np.ndarray:
    """The fractional training timestep whose sigma is `sigmas`, interpolating linearly in log sigma."""
    log_sigma = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), 1e-10))
    last = log_train_sigmas.shape[0] - 2
    # Index of the last training step whose log sigma is <= ours (train sigmas grow with t), kept so
    # that [low, low + 1] is a valid bracket even outside the table.
    low = np.clip(np.searchsorted(log_train_sigmas, log_sigma, side="right") - 1, 0, last)
    high = low + 1
    low_value, high_value = log_train_sigmas[low], log_train_sigmas[high]
    weight = np.clip((low_value - log_sigma) / (low_value - high_value), 0, 1)
    return (1 - weight) * low + weight * high


def dpm_timesteps_and_sigmas(schedule: NoiseSchedule, n: int) -> tuple[np.ndarray, np.ndarray]:
    """DPM-Solver++'s timesteps (int64, n) and sigmas (float32, n + 1, ending in 0)."""
    big_t = schedule.num_train_timesteps
    spacing = schedule.timestep_spacing or "linspace"
    if spacing == "linspace":
        timesteps = np.linspace(0, big_t - 1, n + 1).round()[::-1][:-1].astype(np.int64)
    elif spacing == "leading":
        ratio = big_t // (n + 1)
        timesteps = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].astype(np.int64) + schedule.steps_offset
    else:
        timesteps = np.arange(big_t, 0, -big_t / n).round().astype(np.int64) - 1

    sigmas_train = train_sigmas(schedule)
    log_train = np.log(sigmas_train)
    if schedule.use_karras_sigmas:
        # DPM-Solver spans the whole training range (its smallest and largest sigma).
        sigmas = karras_sigmas(float(sigmas_train[0]), float(sigmas_train[-1]), n)
        timesteps = sigma_to_timestep(sigmas, log_train)
        if schedule.beta_schedule != "squaredcos_cap_v2":
            timesteps = timesteps.round()
        timesteps = timesteps.astype(np.int64)
    else:
        sigmas = np.interp(_checked(timesteps, schedule, n), np.arange(0, big_t), sigmas_train)
    return timesteps, np.concatenate([sigmas, [0.0]]).astype(np.float32)


def euler_timesteps_and_sigmas(schedule: NoiseSchedule, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Euler's timesteps (float32, n, fractional for linspace/Karras) and sigmas (float32, n + 1)."""
    spacing = schedule.timestep_spacing or "linspace"
    timesteps = _checked(_spaced_timesteps(schedule, n, spacing).astype(np.float32), schedule, n)
    sigmas_train = train_sigmas(schedule)
    log_train = np.log(sigmas_train)
    sigmas = np.interp(timesteps, np.arange(0, len(sigmas_train)), sigmas_train)
    if schedule.use_karras_sigmas:
        # Euler spans the range of the timesteps it would otherwise have used.
        sigmas = karras_sigmas(float(sigmas[-1]), float(sigmas[0]), n)
        timesteps = sigma_to_timestep(sigmas, log_train).astype(np.float32)
    return timesteps, np.concatenate([sigmas, [0.0]]).astype(np.float32)


def img2img_start_index(num_inference_steps: int, strength: float) -> int:
    """Index of the first timestep to run for image-to-image with `strength` (diffusers' rule).

    strength 1 runs every step (the init image is fully replaced by noise); strength 0.6 with 50 steps
    skips the 20 noisiest steps and runs the last 30.
    """
    if isinstance(strength, bool) or not isinstance(strength, int | float) or not 0 <= strength <= 1:
        raise UserError(f"strength={strength!r}: must be a number between 0 and 1")
    kept = min(int(num_inference_steps * strength), num_inference_steps)
    start = max(num_inference_steps - kept, 0)
    if start >= num_inference_steps:
        raise UserError(
            f"strength={strength}: with {num_inference_steps} steps that leaves no denoising step; "
            "raise the strength or the number of steps"
        )
    return start
