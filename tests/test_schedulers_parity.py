"""Our samplers against diffusers 0.39's torch schedulers, configured identically.

Both sides are fed the same fake "model": a fixed function of the (scaled) sample and the timestep,
computed in numpy, so any difference comes from the schedulers alone. Timestep tables must be equal
and the final sample equal within 1e-5 relative (max abs difference / max abs value).
"""

from __future__ import annotations

import dataclasses
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from controlsprint.schedulers import NoiseSchedule, make_scheduler  # noqa: E402

RTOL = 1e-5
SHAPE = (2, 4, 8, 8)


def fake_model(x: np.ndarray, t: float) -> np.ndarray:
    """A smooth, bounded, sample- and timestep-dependent stand-in for a UNet."""
    phase = np.linspace(-1, 1, x.shape[1], dtype=np.float32).reshape(1, -1, 1, 1)
    return (0.7 * np.tanh(x) + 0.3 * np.cos(np.float32(0.013) * np.float32(t) + phase)).astype(np.float32)


def reference(name: str, schedule: NoiseSchedule, steps: int):
    """The diffusers scheduler for our `name` with the same config (spacing left to its default if None)."""
    s = schedule
    common = {
        "num_train_timesteps": s.num_train_timesteps,
        "beta_start": s.beta_start,
        "beta_end": s.beta_end,
        "beta_schedule": s.beta_schedule,
        "prediction_type": s.prediction_type,
        "steps_offset": s.steps_offset,
        "rescale_betas_zero_snr": s.rescale_betas_zero_snr,
    }
    if s.timestep_spacing is not None:
        common["timestep_spacing"] = s.timestep_spacing
    if name == "ddim":
        sch = diffusers.DDIMScheduler(
            **common,
            set_alpha_to_one=s.set_alpha_to_one,
            clip_sample=s.clip_sample,
            clip_sample_range=s.clip_sample_range,
        )
    elif name == "dpm":
        sch = diffusers.DPMSolverMultistepScheduler(
            **common, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=s.use_karras_sigmas
        )
    else:
        sch = diffusers.EulerDiscreteScheduler(**common, use_karras_sigmas=s.use_karras_sigmas)
    sch.set_timesteps(steps)
    return sch


def initial_noise(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)


def run_reference(
    ref, latents: np.ndarray, timesteps, image_latents=None, noise=None, mask=None
) -> np.ndarray:
    """diffusers' denoising loop (with the inpainting pipeline's masked blending when `mask` is given)."""
    x = torch.from_numpy(latents)
    for i, t in enumerate(timesteps):
        model_input = ref.scale_model_input(x, t)
        x = ref.step(torch.from_numpy(fake_model(model_input.numpy(), float(t))), t, x).prev_sample
        if mask is not None:
            known = torch.from_numpy(image_latents)
            if i < len(timesteps) - 1:
                known = ref.add_noise(known, torch.from_numpy(noise), torch.tensor([timesteps[i + 1]]))
            x = (1 - torch.from_numpy(mask)) * known + torch.from_numpy(mask) * x
    return x.numpy()


def run_ours(sch, latents, start: int = 0, image_latents=None, noise=None, mask=None) -> np.ndarray:
    x = latents
    state = sch.init_state(np.shape(latents))
    for i in range(start, sch.num_inference_steps):
        model_input = sch.scale_model_input(state, x, i)
        state, x = sch.step(state, fake_model(np.asarray(model_input), float(sch.timesteps[i])), i, x)
        if mask is not None:
            x = (1 - mask) * sch.add_noise(image_latents, noise, i + 1) + mask * x
    return np.asarray(x)


def assert_close(ours: np.ndarray, ref: np.ndarray, rtol: float = RTOL) -> None:
    assert ours.shape == ref.shape and np.all(np.isfinite(ours))
    error = np.abs(ours - ref).max() / np.abs(ref).max()
    assert error <= rtol, f"relative error {error:.2e} > {rtol:.0e}"


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [5, 20, 50])
@pytest.mark.parametrize("name", ["ddim", "dpm", "euler"])
def test_txt2img_loop_matches_diffusers(name, steps, prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    ref = reference(name, schedule, steps)
    sch = make_scheduler(name, schedule, steps)
    np.testing.assert_array_equal(
        np.asarray(sch.timesteps, np.float64), ref.timesteps.numpy().astype(np.float64)
    )
    assert sch.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)

    noise = initial_noise()
    expected = run_reference(ref, (torch.from_numpy(noise) * ref.init_noise_sigma).numpy(), ref.timesteps)
    assert_close(run_ours(sch, noise * sch.init_noise_sigma), expected)


ZERO_SNR = {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}
VARIANTS = {
    "ddim-trailing": ("ddim", {"timestep_spacing": "trailing"}),
    "ddim-linspace-alpha-one": ("ddim", {"timestep_spacing": "linspace", "set_alpha_to_one": True}),
    "ddim-clip-sample": (
        "ddim",
        {"clip_sample": True, "clip_sample_range": 0.5, "prediction_type": "sample"},
    ),
    "ddim-linear-betas": ("ddim", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}),
    "dpm-leading": ("dpm", {"timestep_spacing": "leading"}),
    "dpm-trailing-v": ("dpm", {"timestep_spacing": "trailing", "prediction_type": "v_prediction"}),
    "dpm-karras": ("dpm", {"use_karras_sigmas": True}),
    "dpm-cosine": ("dpm", {"beta_schedule": "squaredcos_cap_v2"}),
    "euler-leading": ("euler", {"timestep_spacing": "leading"}),
    "euler-trailing-sample": ("euler", {"timestep_spacing": "trailing", "prediction_type": "sample"}),
    "euler-karras-v": ("euler", {"use_karras_sigmas": True, "prediction_type": "v_prediction"}),
    # zero terminal SNR (the embedded model's schedule): DDIM starts at alpha = 0, the sigma samplers
    # at diffusers' alpha_bar = 2**-24 stand-in
    "ddim-zero-snr-v": ("ddim", ZERO_SNR),
    "dpm-zero-snr-v": ("dpm", ZERO_SNR),
    "euler-zero-snr-v": ("euler", ZERO_SNR),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("steps", [7, 25])
def test_config_variants_match_diffusers(variant, steps):
    name, changes = VARIANTS[variant]
    schedule = dataclasses.replace(NoiseSchedule(), **changes)
    ref = reference(name, schedule, steps)
    sch = make_scheduler(name, schedule, steps)
    ours_t, ref_t = np.asarray(sch.timesteps, np.float64), ref.timesteps.numpy().astype(np.float64)
    if name == "euler" and schedule.use_karras_sigmas:
        # Fractional timesteps found by inverting float32 sigmas: torch's float32 linspace of the betas
        # rounds differently from numpy's in the last bit, which moves these by ~1e-4 of a step.
        np.testing.assert_allclose(ours_t, ref_t, rtol=0, atol=1e-3)
    else:
        np.testing.assert_array_equal(ours_t, ref_t)
    noise = initial_noise(1)
    expected = run_reference(ref, (torch.from_numpy(noise) * ref.init_noise_sigma).numpy(), ref.timesteps)
    # Euler's zero-SNR start is sigma = 4096, where the last-bit difference between torch's and numpy's
    # float32 beta ramps (see above), carried through the rescaling, grows to ~5e-5 of the result.
    loose = name == "euler" and schedule.rescale_betas_zero_snr
    assert_close(run_ours(sch, noise * sch.init_noise_sigma), expected, rtol=1e-4 if loose else RTOL)


def pipeline_timesteps(ref, steps: int, strength: float):
    """diffusers' own img2img rule (ControlNet img2img pipeline's get_timesteps), which sets begin_index."""
    from diffusers import StableDiffusionControlNetImg2ImgPipeline

    fake_pipeline = types.SimpleNamespace(scheduler=ref)
    timesteps, remaining = StableDiffusionControlNetImg2ImgPipeline.get_timesteps(
        fake_pipeline, steps, strength, "cpu"
    )
    return timesteps, remaining


def test_zero_terminal_snr_tables_match_diffusers():
    from controlsprint.schedulers.schedule import alphas_cumprod, betas

    schedule = NoiseSchedule(**ZERO_SNR)
    ref = diffusers.DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, **ZERO_SNR
    )
    # betas = 1 - alpha_t ratios near 1: float32 cancellation leaves ~1e-7 of 1e-3 either side
    np.testing.assert_allclose(betas(schedule), ref.betas.numpy(), rtol=1e-4, atol=5e-6)
    np.testing.assert_allclose(alphas_cumprod(schedule), ref.alphas_cumprod.numpy(), rtol=1e-4, atol=1e-7)
    assert alphas_cumprod(schedule)[-1] == 0.0  # the last training step is pure noise
    assert alphas_cumprod(schedule)[0] == pytest.approx(alphas_cumprod(NoiseSchedule())[0], rel=1e-6)


@pytest.mark.parametrize("steps", [5, 20, 50])
@pytest.mark.parametrize("name", ["ddim", "dpm", "euler"])
def test_img2img_strength_runs_the_same_timesteps_and_latents(name, steps):
    schedule = NoiseSchedule()
    ref = reference(name, schedule, steps)
    sch = make_scheduler(name, schedule, steps)
    timesteps, remaining = pipeline_timesteps(ref, steps, 0.6)
    start = sch.start_index(0.6)
    assert sch.num_inference_steps - start == remaining == int(steps * 0.6)
    np.testing.assert_array_equal(
        np.asarray(sch.timesteps[start:], np.float64), timesteps.numpy().astype(np.float64)
    )

    image_latents, noise = initial_noise(2), initial_noise(3)
    start_latents = ref.add_noise(torch.from_numpy(image_latents), torch.from_numpy(noise), timesteps[:1])
    ours_start = np.asarray(sch.add_noise(image_latents, noise, start))
    assert_close(ours_start, start_latents.numpy())
    assert_close(run_ours(sch, ours_start, start=start), run_reference(ref, start_latents.numpy(), timesteps))


@pytest.mark.parametrize("name", ["ddim", "dpm", "euler"])
def test_inpaint_masked_blending_matches_the_pipeline_loop(name):
    steps, strength = 12, 0.75
    schedule = NoiseSchedule()
    ref = reference(name, schedule, steps)
    sch = make_scheduler(name, schedule, steps)
    timesteps, _ = pipeline_timesteps(ref, steps, strength)
    start = sch.start_index(strength)
    image_latents, noise = initial_noise(4), initial_noise(5)
    mask = np.zeros(SHAPE, np.float32)
    mask[..., 2:6, 1:5] = 1.0  # 1 = repaint, 0 = keep
    start_latents = ref.add_noise(
        torch.from_numpy(image_latents), torch.from_numpy(noise), timesteps[:1]
    ).numpy()

    expected = run_reference(ref, start_latents, timesteps, image_latents, noise, mask)
    ours = run_ours(sch, sch.add_noise(image_latents, noise, start), start, image_latents, noise, mask)
    assert_close(ours, expected)
    np.testing.assert_array_equal(ours[mask == 0], image_latents[mask == 0])  # index n adds no noise


@pytest.mark.parametrize("name", ["ddim", "dpm", "euler"])
def test_whole_loop_traces_in_one_jitted_fori_loop(name):
    import jax
    import jax.numpy as jnp

    steps = 20
    schedule = NoiseSchedule(prediction_type="v_prediction")
    ref = reference(name, schedule, steps)
    sch = make_scheduler(name, schedule, steps)
    phase = jnp.linspace(-1, 1, SHAPE[1], dtype=jnp.float32).reshape(1, -1, 1, 1)

    @jax.jit
    def sample(sch, noise):  # the scheduler is an argument: its tables are traced leaves
        def body(i, carry):
            state, x = carry
            model_input = sch.scale_model_input(state, x, i)
            model_output = 0.7 * jnp.tanh(model_input) + 0.3 * jnp.cos(0.013 * sch.timesteps[i] + phase)
            return sch.step(state, model_output, i, x)

        carry = (sch.init_state(noise.shape), noise * sch.init_noise_sigma)
        return jax.lax.fori_loop(0, sch.num_inference_steps, body, carry)

    noise = initial_noise(6)
    state, latents = sample(sch, jnp.asarray(noise))
    assert int(state.step_count) == steps
    expected = run_reference(ref, (torch.from_numpy(noise) * ref.init_noise_sigma).numpy(), ref.timesteps)
    assert_close(np.asarray(latents), expected)
    # One loop in the program (fori_loop with static bounds lowers to scan), with one copy of the body.
    jaxpr = str(jax.make_jaxpr(sample)(sch, jnp.asarray(noise)))
    assert ("scan[" in jaxpr or "while[" in jaxpr) and jaxpr.count("tanh") == 1
