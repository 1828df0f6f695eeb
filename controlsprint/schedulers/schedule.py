"""The training noise schedule: a frozen config read from a diffusers `scheduler_config.json`.

A `NoiseSchedule` says how the model was trained to see noise (the betas, what it predicts, how
inference timesteps are laid out). Samplers (`make_scheduler`) and the training utilities both build
their tables from it, so one object describes a model's noise process everywhere.

Only numpy is imported here: the CLI can validate a config without starting JAX.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from controlsprint.errors import UserError

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "v_prediction", "sample"]
TimestepSpacing = Literal["leading", "trailing", "linspace"]

SCHEDULER_NAMES = ("ddim", "dpm", "euler")  # the samplers `make_scheduler` builds

_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_SPACINGS = ("leading", "trailing", "linspace")

# diffusers keys that change the noise process in ways we do not implement: accepting them silently
# would sample from a different process than the model was trained on, so a non-default value is an error.
_UNSUPPORTED_UNLESS_DEFAULT: dict[str, Any] = {
    "thresholding": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "use_lu_lambdas": False,
    "use_flow_sigmas": False,
    "timestep_type": "discrete",
    "interpolation_type": "linear",
    "sigma_min": None,
    "sigma_max": None,
}


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
    """A model's noise schedule; the defaults are Stable Diffusion 1.5's.

    `timestep_spacing=None` means "what diffusers uses for that sampler when the config does not say":
    leading for DDIM, linspace for DPM-Solver++ and Euler (SD1.5's config leaves it out).
    """

    num_train_timesteps: int = 1000  # length of the training chain, t in [0, num_train_timesteps)
    beta_start: float = 0.00085  # first beta of the linear / scaled_linear ramp
    beta_end: float = 0.012  # last beta of the ramp
    beta_schedule: BetaSchedule = "scaled_linear"  # scaled_linear = linear in sqrt(beta) (latent diffusion)
    trained_betas: tuple[float, ...] | None = None  # explicit betas, overriding start/end/schedule
    prediction_type: PredictionType = "epsilon"  # what the model outputs: noise, velocity or x0
    steps_offset: int = 1  # added to "leading" timesteps (SD1.5 samples t=981..1, not 980..0)
    set_alpha_to_one: bool = False  # DDIM's last step: alpha_prev = 1 (True) or alphas_cumprod[0]
    timestep_spacing: TimestepSpacing | None = None  # None: the sampler's diffusers default
    clip_sample: bool = False  # DDIM clips predicted x0 to +-clip_sample_range (never for latents)
    clip_sample_range: float = 1.0
    use_karras_sigmas: bool = False  # DPM-Solver++ and Euler: Karras et al. sigma spacing (rho 7)
    # Lin et al. 2023: shift and scale sqrt(alpha_bar) so the last training step is pure noise (SNR 0).
    # Without it SD's schedule leaves sqrt(alpha_bar_999) = 0.068 of the picture in x_999, and a model
    # learns to read an image's mean colour from the initial noise instead of the prompt. Needs
    # v_prediction (epsilon cannot name x0 at SNR 0) and pairs with "trailing" spacing, which starts
    # sampling at t = 999.
    rescale_betas_zero_snr: bool = False

    def __post_init__(self) -> None:
        _validate(self, "scheduler config")


# Stable Diffusion 1.5's DDIM scheduler config written with every key (diffusers' class defaults differ
# from SD1.5's for missing ones), so a saved pipeline folder reads back the same schedule in diffusers.
SD15_SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.39.0",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


# The same betas rescaled to zero terminal SNR, with v-prediction and trailing timesteps: the schedule of
# the embedded model's UNet (Lin et al. 2023's recipe; diffusers reads it as written).
ZERO_SNR_V_SCHEDULER_CONFIG = {
    **SD15_SCHEDULER_CONFIG,
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "rescale_betas_zero_snr": True,
}


def sd15_schedule() -> NoiseSchedule:
    """Stable Diffusion 1.5's schedule (scaled_linear 0.00085..0.012, 1000 steps, epsilon)."""
    return NoiseSchedule()


def _fail(source: str, key: str, value: Any, why: str) -> UserError:
    return UserError(f"{source}: {key}={value!r}: {why}")


def _check_choice(source: str, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(source, key, value, f"must be one of {', '.join(choices)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _validate(s: NoiseSchedule, source: str) -> None:
    if not _is_int(s.num_train_timesteps) or s.num_train_timesteps < 2:
        raise _fail(source, "num_train_timesteps", s.num_train_timesteps, "must be an integer >= 2")
    for key in ("beta_start", "beta_end", "clip_sample_range"):
        value = getattr(s, key)
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise _fail(source, key, value, "must be a positive number")
    if s.beta_start > s.beta_end or s.beta_end >= 1:
        raise _fail(source, "beta_end", s.beta_end, "must satisfy beta_start <= beta_end < 1")
    _check_choice(source, "beta_schedule", s.beta_schedule, _BETA_SCHEDULES)
    _check_choice(source, "prediction_type", s.prediction_type, _PREDICTION_TYPES)
    if s.timestep_spacing is not None:
        _check_choice(source, "timestep_spacing", s.timestep_spacing, _SPACINGS)
    if not _is_int(s.steps_offset) or s.steps_offset < 0:
        raise _fail(source, "steps_offset", s.steps_offset, "must be an integer >= 0")
    for key in ("set_alpha_to_one", "clip_sample", "use_karras_sigmas", "rescale_betas_zero_snr"):
        if not isinstance(getattr(s, key), bool):
            raise _fail(source, key, getattr(s, key), "must be true or false")
    if s.trained_betas is not None:
        betas = s.trained_betas
        if len(betas) != s.num_train_timesteps or not all(_is_number(b) and 0 < b < 1 for b in betas):
            raise _fail(
                source,
                "trained_betas",
                f"<{len(betas)} values>",
                f"must be {s.num_train_timesteps} numbers in (0, 1), one per training timestep",
            )


def from_diffusers_config(data: Mapping[str, Any], *, source: str = "scheduler_config.json") -> NoiseSchedule:
    """Build a `NoiseSchedule` from a parsed diffusers scheduler config.

    Keys of other samplers (`solver_order`, `skip_prk_steps`, `_class_name`, ...) are ignored: the
    sampler is chosen by name, the config only describes the noise process. Missing keys take the SD1.5
    defaults. Keys that would change the noise process in a way we do not implement are an error.
    """
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a JSON object, got {type(data).__name__}")
    for key, default in _UNSUPPORTED_UNLESS_DEFAULT.items():
        if key in data and data[key] != default:
            raise _fail(source, key, data[key], "is not supported (only the default is)")
    names = {f.name for f in dataclasses.fields(NoiseSchedule)}
    values = {k: v for k, v in data.items() if k in names}
    if values.get("use_karras_sigmas") is None:  # diffusers' Euler allows null for false
        values.pop("use_karras_sigmas", None)
    if isinstance(values.get("trained_betas"), list | tuple):
        values["trained_betas"] = tuple(values["trained_betas"])
    try:
        schedule = dataclasses.replace(NoiseSchedule(), **values)
    except UserError as err:
        # Re-label the message with the file it came from rather than the generic "scheduler config".
        raise UserError(str(err).replace("scheduler config", source, 1)) from None
    return schedule


def load_noise_schedule(path: str | Path) -> NoiseSchedule:
    """Read a `scheduler_config.json`, given as the file, its `scheduler/` folder or a model folder."""
    path = Path(path)
    candidates = [path, path / "scheduler_config.json", path / "scheduler" / "scheduler_config.json"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise UserError(f"scheduler config not found: {path} (expected scheduler/scheduler_config.json)")
    try:
        data = json.loads(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{found}: not a readable JSON file ({err})") from None
    return from_diffusers_config(data, source=str(found))


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    # Improved DDPM (Nichol & Dhariwal): alpha_bar(t) = cos^2((t + 0.008) / 1.008 * pi / 2).
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return np.array([min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)])


def _zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Betas whose sqrt(alpha_bar) is moved linearly so it ends at exactly 0 and starts where it did
    (Lin et al. 2023, Algorithm 1); float32 throughout, as diffusers computes it."""
    root = np.sqrt(np.cumprod(np.float32(1.0) - betas, dtype=np.float32))
    first, last = root[0], root[-1]
    root = (root - last) * (first / (first - last))
    bar = root * root
    alphas = np.concatenate([bar[:1], bar[1:] / bar[:-1]])
    return (np.float32(1.0) - alphas).astype(np.float32)


@functools.lru_cache(maxsize=32)
def betas(schedule: NoiseSchedule) -> np.ndarray:
    """The training betas, float32 (the precision diffusers keeps them in)."""
    n = schedule.num_train_timesteps
    if schedule.trained_betas is not None:
        values = np.asarray(schedule.trained_betas, dtype=np.float64)
    elif schedule.beta_schedule == "linear":
        values = np.linspace(schedule.beta_start, schedule.beta_end, n)
    elif schedule.beta_schedule == "scaled_linear":
        # Squared in float32 after a float32 ramp, as diffusers does, so the tables agree to the last bits.
        ramp = np.linspace(schedule.beta_start**0.5, schedule.beta_end**0.5, n).astype(np.float32)
        values = ramp * ramp
    else:
        values = _cosine_betas(n)
    values = np.asarray(values, dtype=np.float32)
    if schedule.rescale_betas_zero_snr:
        values = _zero_terminal_snr(values)
    out = np.asarray(values, dtype=np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=32)
def alphas_cumprod(schedule: NoiseSchedule) -> np.ndarray:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), float32; the product is accumulated in float64 (as torch does)."""
    out = np.cumprod(1.0 - betas(schedule).astype(np.float64)).astype(np.float32)
    out.flags.writeable = False
    return out


def train_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """The noise-to-signal ratio sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) per training step, float32.

    With a zero terminal SNR the last sigma would be infinite; the sigma-based samplers (DPM-Solver++,
    Euler) take alpha_bar = 2**-24 there instead, as diffusers does, so their first step stays finite."""
    ac = alphas_cumprod(schedule)
    if schedule.rescale_betas_zero_snr:
        ac = ac.copy()
        ac[-1] = np.float32(2.0**-24)
    return (((1 - ac) / ac) ** 0.5).astype(np.float32)
