"""Training-side noise utilities against diffusers' DDPMScheduler (what the reference trainers use)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from controlsprint.schedulers import (
    NoiseSchedule,
    add_noise,
    alphas_cumprod,
    sample_timesteps,
    training_target,
    velocity,
)

SCHEDULES = {
    "sd15": NoiseSchedule(),
    "linear": NoiseSchedule(beta_schedule="linear", beta_start=0.0001, beta_end=0.02),
    "cosine": NoiseSchedule(beta_schedule="squaredcos_cap_v2"),
}


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((4, 8, 8, 4), dtype=np.float32)  # NHWC, as our Flax models use
    noise = rng.standard_normal((4, 8, 8, 4), dtype=np.float32)
    t = np.array([0, 1, 500, 999], np.int32)
    return x0, noise, t


@pytest.mark.parametrize("which", sorted(SCHEDULES))
def test_add_noise_and_velocity_match_ddpm_scheduler(which):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    schedule = SCHEDULES[which]
    ddpm = diffusers.DDPMScheduler(
        num_train_timesteps=schedule.num_train_timesteps,
        beta_start=schedule.beta_start,
        beta_end=schedule.beta_end,
        beta_schedule=schedule.beta_schedule,
    )
    x0, noise, t = _batch()
    t_torch = torch.from_numpy(t.astype(np.int64))
    expected_xt = ddpm.add_noise(torch.from_numpy(x0), torch.from_numpy(noise), t_torch).numpy()
    expected_v = ddpm.get_velocity(torch.from_numpy(x0), torch.from_numpy(noise), t_torch).numpy()
    # torch's float32 linspace of the betas can differ from numpy's in the last bit; near t=0, where
    # alpha_bar is within 2e-4 of 1, one ulp of alpha_bar moves sqrt(1 - alpha_bar) by ~1e-4 relative.
    ours_xt, ours_v = add_noise(schedule, x0, noise, t), velocity(schedule, x0, noise, t)
    np.testing.assert_allclose(np.asarray(ours_xt), expected_xt, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours_v), expected_v, rtol=1e-5, atol=1e-5)


def test_training_target_follows_the_prediction_type():
    x0, noise, t = _batch(1)
    base = NoiseSchedule()
    np.testing.assert_array_equal(training_target(base, x0, noise, t), noise)
    sample = dataclasses.replace(base, prediction_type="sample")
    np.testing.assert_array_equal(training_target(sample, x0, noise, t), x0)
    v = dataclasses.replace(base, prediction_type="v_prediction")
    np.testing.assert_array_equal(
        np.asarray(training_target(v, x0, noise, t)), np.asarray(velocity(v, x0, noise, t))
    )
    # The velocity target is consistent with the noisy input: x0 = sqrt(a) x_t - sqrt(1 - a) v.
    xt, target = np.asarray(add_noise(v, x0, noise, t)), np.asarray(training_target(v, x0, noise, t))
    a = alphas_cumprod(v)[t].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(np.sqrt(a) * xt - np.sqrt(1 - a) * target, x0, atol=2e-5)


def test_utilities_jit_with_traced_timesteps_and_scalar_t():
    import jax

    schedule = NoiseSchedule()
    x0, noise, t = _batch(2)
    jitted = jax.jit(lambda x0, noise, t: add_noise(schedule, x0, noise, t))
    np.testing.assert_allclose(jitted(x0, noise, t), add_noise(schedule, x0, noise, t), rtol=1e-6, atol=1e-6)
    single = np.asarray(add_noise(schedule, x0, noise, 500))
    np.testing.assert_allclose(single[2], np.asarray(add_noise(schedule, x0, noise, t))[2], rtol=1e-6)


def test_sample_timesteps_are_uniform_ints_in_range_and_seeded():
    import jax

    schedule = NoiseSchedule(num_train_timesteps=50, beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
    t = np.asarray(sample_timesteps(schedule, jax.random.PRNGKey(0), 4096))
    assert t.dtype == np.int32 and t.shape == (4096,)
    assert t.min() == 0 and t.max() == 49 and len(np.unique(t)) == 50
    again = np.asarray(sample_timesteps(schedule, jax.random.PRNGKey(0), 4096))
    np.testing.assert_array_equal(t, again)


def test_cubic_timesteps_favour_high_noise_as_t2i_adapter():
    import jax
    import pytest

    schedule = NoiseSchedule()  # 1000 training timesteps
    t = np.asarray(sample_timesteps(schedule, jax.random.PRNGKey(0), 20000, "cubic"))
    assert t.dtype == np.int32 and t.min() >= 0 and t.max() == 999
    # t = (1 - u^3) T: P(t < T/2) = 1 - 0.5^(1/3) = 0.206, the median at 0.875 T (uniform: 0.5, T/2)
    assert abs(np.mean(t < 500) - 0.206) < 0.01
    assert abs(np.median(t) - 875) < 10
    uniform = np.asarray(sample_timesteps(schedule, jax.random.PRNGKey(0), 20000))
    assert abs(np.mean(uniform < 500) - 0.5) < 0.01
    with pytest.raises(ValueError, match="timestep bias"):
        sample_timesteps(schedule, jax.random.PRNGKey(0), 4, "quadratic")
