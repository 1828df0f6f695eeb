"""Noise schedule configs, the sampler API, and invariants that hold without any reference library."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from controlsprint.config import override
from controlsprint.errors import UserError
from controlsprint.schedulers import (
    SCHEDULER_NAMES,
    NoiseSchedule,
    alphas_cumprod,
    from_diffusers_config,
    img2img_start_index,
    load_noise_schedule,
    make_scheduler,
    sd15_schedule,
)

# Stable Diffusion 1.5's scheduler/scheduler_config.json, verbatim.
SD15_JSON = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def test_sd15_scheduler_config_is_the_default_schedule():
    schedule = from_diffusers_config(SD15_JSON)
    assert schedule == sd15_schedule() == NoiseSchedule()
    assert (schedule.beta_schedule, schedule.beta_start, schedule.beta_end) == (
        "scaled_linear",
        0.00085,
        0.012,
    )
    assert (schedule.num_train_timesteps, schedule.steps_offset, schedule.set_alpha_to_one) == (
        1000,
        1,
        False,
    )
    assert schedule.prediction_type == "epsilon" and schedule.timestep_spacing is None
    ac = alphas_cumprod(schedule)
    assert ac.dtype == np.float32 and ac.shape == (1000,)
    # Known SD1.5 values: alpha_bar_0 = 1 - 0.00085, alpha_bar_999 ~ 0.00466.
    assert ac[0] == pytest.approx(0.99915, abs=1e-7) and ac[-1] == pytest.approx(0.00466, rel=1e-3)


def test_a_v_prediction_config_is_read_key_by_key():
    data = {
        "_class_name": "DDIMScheduler",
        "beta_schedule": "linear",
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
        "steps_offset": 0,
        "set_alpha_to_one": True,
        "clip_sample": True,
        "clip_sample_range": 2.0,
        "use_karras_sigmas": None,
        "solver_order": 2,  # another sampler's key: ignored
    }
    schedule = from_diffusers_config(data)
    expected = NoiseSchedule(
        beta_schedule="linear",
        beta_start=0.0001,
        beta_end=0.02,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
        steps_offset=0,
        set_alpha_to_one=True,
        clip_sample=True,
        clip_sample_range=2.0,
    )
    assert schedule == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("beta_schedule", "cosine"),
        ("prediction_type", "flow_prediction"),
        ("timestep_spacing", "middle"),
        ("num_train_timesteps", 0),
        ("num_train_timesteps", 99.5),
        ("beta_start", -1.0),
        ("beta_end", 1.5),
        ("steps_offset", -1),
        ("set_alpha_to_one", "no"),
        ("trained_betas", [0.1, 0.2]),
        ("rescale_betas_zero_snr", "yes"),
        ("thresholding", True),
        ("timestep_type", "continuous"),
    ],
)
def test_invalid_or_unsupported_values_are_one_line_user_errors_naming_the_key(key, value):
    with pytest.raises(UserError) as err:
        from_diffusers_config({**SD15_JSON, key: value}, source="model/scheduler/scheduler_config.json")
    message = str(err.value)
    assert key in message and "model/scheduler/scheduler_config.json" in message and "\n" not in message


def test_trained_betas_replace_the_ramp():
    betas = np.linspace(0.001, 0.02, 10)
    schedule = from_diffusers_config({"num_train_timesteps": 10, "trained_betas": betas.tolist()})
    np.testing.assert_allclose(alphas_cumprod(schedule), np.cumprod(1 - betas), rtol=1e-6)


def test_load_noise_schedule_from_a_model_folder_and_errors(tmp_path):
    (tmp_path / "scheduler").mkdir()
    config = tmp_path / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**SD15_JSON, "prediction_type": "v_prediction"}))
    for where in (tmp_path, tmp_path / "scheduler", config):
        assert load_noise_schedule(where).prediction_type == "v_prediction"
    with pytest.raises(UserError, match="scheduler config not found"):
        load_noise_schedule(tmp_path / "missing")
    config.write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON file"):
        load_noise_schedule(tmp_path)
    config.write_text("[1, 2]")
    with pytest.raises(UserError, match="expected a JSON object"):
        load_noise_schedule(tmp_path)


def test_set_overrides_are_typed_and_validated():
    schedule = override(NoiseSchedule(), ["timestep_spacing=trailing", "use_karras_sigmas=true"])
    assert schedule.timestep_spacing == "trailing" and schedule.use_karras_sigmas is True
    with pytest.raises(UserError, match="prediction_type"):
        override(NoiseSchedule(), ["prediction_type=noise"])
    with pytest.raises(UserError, match="beta_end"):
        override(NoiseSchedule(), ["beta_end=2"])


def test_importing_the_package_does_not_import_jax():
    code = "import sys, controlsprint.schedulers as s; s.NoiseSchedule(); print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("heun", None, 20), "scheduler 'heun'"),
        (("ddim", None, 0), "steps=0"),
        (("dpm", None, 2.5), "steps=2.5"),
        (("euler", None, 1001), "steps=1001"),
        (("ddim", None, 1000), "num_inference_steps=1000"),  # leading + steps_offset 1 passes t=999
    ],
)
def test_make_scheduler_rejects_bad_arguments(args, match):
    with pytest.raises(UserError, match=match):
        make_scheduler(*args)


def test_img2img_start_index_rule_and_errors():
    assert img2img_start_index(50, 0.6) == 20 and img2img_start_index(50, 1.0) == 0
    assert img2img_start_index(20, 0.75) == 5 and img2img_start_index(3, 0.5) == 2
    for strength in (1.5, -0.1, "0.5", True):
        with pytest.raises(UserError, match="strength"):
            img2img_start_index(20, strength)
    with pytest.raises(UserError, match="no denoising step"):
        img2img_start_index(10, 0.05)


def _oracle_output(name: str, sch, prediction_type: str, i: int, x0, noise):
    """The exact model output at step i for a latent made from (x0, noise) at that step's noise level."""
    level = float(sch.noise_scale[i])
    if name == "euler":  # its latent is x0 + sigma * noise; the model sees it rescaled to unit variance
        alpha, sigma = 1 / np.sqrt(level**2 + 1), level / np.sqrt(level**2 + 1)
    else:
        alpha, sigma = float(sch.signal_scale[i]), level
    return {"epsilon": noise, "v_prediction": alpha * noise - sigma * x0, "sample": x0}[prediction_type]


@pytest.mark.parametrize("strength", [1.0, 0.5])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_an_exact_model_walks_the_forward_process_back_to_x0(name, prediction_type, strength):
    # With a model that always predicts the truth, every step must land on the forward process at the
    # next noise level, and the last step on x0 itself (DDIM needs set_alpha_to_one for that last step).
    schedule = NoiseSchedule(prediction_type=prediction_type, set_alpha_to_one=True)
    sch = make_scheduler(name, schedule, 10)
    rng = np.random.default_rng(0)
    x0, noise = (
        rng.standard_normal((2, 3, 4, 4), dtype=np.float32),
        rng.standard_normal((2, 3, 4, 4), dtype=np.float32),
    )
    start = sch.start_index(strength)
    x = sch.add_noise(x0, noise, start)
    state = sch.init_state(x0.shape)
    for i in range(start, sch.num_inference_steps):
        state, x = sch.step(state, _oracle_output(name, sch, prediction_type, i, x0, noise), i, x)
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(sch.add_noise(x0, noise, i + 1)), rtol=1e-4, atol=1e-4
        )
    np.testing.assert_allclose(np.asarray(x), x0, atol=1e-4)


def test_init_noise_sigma_makes_txt2img_start_the_noisiest_forward_latent():
    # Starting noise * init_noise_sigma must equal add_noise(0, noise, 0) when the first step is the
    # noisiest: for Euler with linspace spacing (sigma_max) and the VP samplers (1 = their noise scale ~1).
    euler = make_scheduler("euler", None, 10)
    assert euler.init_noise_sigma == pytest.approx(float(euler.noise_scale[0]))
    leading = make_scheduler("euler", dataclasses.replace(NoiseSchedule(), timestep_spacing="leading"), 10)
    sigma = float(leading.noise_scale[0])
    assert leading.init_noise_sigma == pytest.approx(np.sqrt(sigma**2 + 1))
    assert (
        make_scheduler("ddim", None, 10).init_noise_sigma
        == make_scheduler("dpm", None, 10).init_noise_sigma
        == 1.0
    )


def test_scale_model_input_and_per_batch_add_noise():
    import jax.numpy as jnp

    x = jnp.ones((2, 4, 3, 3))
    euler = make_scheduler("euler", None, 10)
    sigma = float(euler.noise_scale[3])
    np.testing.assert_allclose(euler.scale_model_input(None, x, 3), x / np.sqrt(sigma**2 + 1), rtol=1e-6)
    for name in ("ddim", "dpm"):
        np.testing.assert_array_equal(make_scheduler(name, None, 10).scale_model_input(None, x, 3), x)
    ddim = make_scheduler("ddim", None, 10)
    noise = jnp.full_like(x, 2.0)
    mixed = ddim.add_noise(x, noise, jnp.array([0, 10]))  # one index per batch element
    ac = alphas_cumprod(NoiseSchedule())[int(ddim.timesteps[0])]
    np.testing.assert_allclose(mixed[0], np.sqrt(ac) + 2 * np.sqrt(1 - ac), rtol=1e-6)
    np.testing.assert_array_equal(mixed[1], x[1])


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
def test_step_with_a_traced_index_equals_eager_steps(name):
    import jax
    import jax.numpy as jnp

    sch = make_scheduler(name, None, 8)
    x = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 4, 4)), jnp.float32)
    state = sch.init_state(x.shape)
    jitted = jax.jit(lambda sch, state, out, i, x: sch.step(state, out, i, x))
    eager_state, eager_x, jit_state, jit_x = state, x, state, x
    for i in range(3):
        out = jnp.tanh(eager_x) * 0.5
        eager_state, eager_x = sch.step(eager_state, out, i, eager_x)
        jit_state, jit_x = jitted(sch, jit_state, jnp.tanh(jit_x) * 0.5, jnp.int32(i), jit_x)
    assert jitted._cache_size() == 1  # one compilation for every step index
    np.testing.assert_allclose(np.asarray(jit_x), np.asarray(eager_x), rtol=1e-6, atol=1e-6)
    assert int(jit_state.step_count) == 3


def test_dpm_takes_a_first_order_step_whenever_it_has_no_history():
    # At an img2img start index the solver has no previous x0: the first-order step must be used,
    # which equals re-noising the x0 prediction to the next level (alpha_next x0 + sigma_next eps).
    sch = make_scheduler("dpm", None, 10)
    rng = np.random.default_rng(2)
    x, eps = (
        rng.standard_normal((1, 4, 4, 4), dtype=np.float32),
        rng.standard_normal((1, 4, 4, 4), dtype=np.float32),
    )
    i = 4
    alpha, sigma = float(sch.signal_scale[i]), float(sch.noise_scale[i])
    x0 = (x - sigma * eps) / alpha
    fresh_state, prev = sch.step(sch.init_state(x.shape), eps, i, x)
    expected = float(sch.signal_scale[i + 1]) * x0 + float(sch.noise_scale[i + 1]) * eps
    np.testing.assert_allclose(np.asarray(prev), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fresh_state.previous_x0), x0, rtol=1e-5, atol=1e-5)
    # With history, the second-order correction changes the result.
    history = fresh_state.replace(previous_x0=fresh_state.previous_x0 + 1.0)
    _, corrected = sch.step(history, eps, i, x)
    assert np.abs(np.asarray(corrected) - np.asarray(prev)).max() > 1e-3
