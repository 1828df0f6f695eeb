"""The denoising loss's options: offset noise (`optim.noise_offset`), Min-SNR weighting (`optim.snr_gamma`),
the foreground weight and how timesteps are drawn (`optim.timestep_bias`)."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from controlsprint.schedulers import NoiseSchedule, alphas_cumprod, min_snr_weights
from controlsprint.training.step import StepContext, _denoising_loss, _training_noise


class ZeroUNet(nn.Module):
    """Predicts 0 everywhere, so the loss is the target's own energy: easy to compute by hand."""

    @nn.compact
    def __call__(self, noisy, t, text):
        return jnp.zeros_like(noisy)


def _context(**changes) -> StepContext:
    ctx = StepContext(
        mode="unet",
        modules={"unet": ZeroUNet()},
        schedule=NoiseSchedule(),
        scaling_factor=1.0,
        optimizer=optax.sgd(0.1),
        caption_dropout=0.0,
        empty_ids=np.zeros(4, np.int32),
    )
    return dataclasses.replace(ctx, **changes)


def _cached_batch(rows: int = 16):
    rng = np.random.default_rng(0)
    return {
        "latent_mean": rng.standard_normal((rows, 4, 4, 4), dtype=np.float32),
        "latent_logvar": np.full((rows, 4, 4, 4), -20.0, np.float32),
        "text": rng.standard_normal((rows, 3, 8), dtype=np.float32),
    }


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_min_snr_weights_follow_the_paper(prediction_type):
    schedule = NoiseSchedule(prediction_type=prediction_type)
    t = np.array([0, 50, 200, 500, 999])
    ac = alphas_cumprod(schedule).astype(np.float64)[t]
    snr = ac / (1 - ac)
    expected = {
        "epsilon": np.minimum(snr, 5) / snr,
        "v_prediction": np.minimum(snr, 5) / (snr + 1),
        "sample": np.minimum(snr, 5),
    }[prediction_type]
    np.testing.assert_allclose(np.asarray(min_snr_weights(schedule, t, 5.0)), expected, rtol=1e-5)
    if prediction_type == "epsilon":  # noisy steps keep full weight, nearly clean ones lose most of it
        weights = np.asarray(min_snr_weights(schedule, t, 5.0))
        assert weights[-1] == pytest.approx(1.0) and weights[0] < 0.01


def test_offset_noise_shifts_each_sample_channel_and_zero_offset_is_plain_noise():
    rng = jax.random.key(3)
    shape = (64, 32, 32, 4)
    np.testing.assert_array_equal(
        np.asarray(_training_noise(_context(), rng, shape)), np.asarray(jax.random.normal(rng, shape))
    )
    means = np.asarray(_training_noise(_context(noise_offset=0.5), rng, shape)).mean(axis=(1, 2))
    # per (sample, channel) mean: N(0, 0.5^2) shift + the pixels' own mean (std 1/32)
    assert means.std() == pytest.approx(np.sqrt(0.25 + 1 / 32**2), rel=0.15)
    plain_means = np.asarray(_training_noise(_context(), rng, shape)).mean(axis=(1, 2))
    assert plain_means.std() < 0.05


def test_snr_gamma_weights_each_sample_of_the_loss():
    ctx, batch, rng = _context(), _cached_batch(), jax.random.key(1)
    frozen = {"empty_text": np.zeros((3, 8), np.float32)}
    plain = float(_denoising_loss(ctx, {}, frozen, batch, rng))
    weighted = float(_denoising_loss(_context(snr_gamma=5.0), {}, frozen, batch, rng))
    # Rebuild the step's draws (same key splits as _denoising_loss): the zero model's loss per sample
    # is the mean square of its noise target, weighted by min(SNR, 5) / SNR of its timestep.
    _, rng_noise, rng_t, _ = jax.random.split(rng, 4)
    noise = np.asarray(jax.random.normal(rng_noise, batch["latent_mean"].shape))
    t = np.asarray(jax.random.randint(rng_t, (16,), 0, 1000, dtype=jnp.int32))
    per_sample = np.square(noise).reshape(16, -1).mean(axis=1)
    assert plain == pytest.approx(per_sample.mean(), rel=1e-5)
    ac = alphas_cumprod(NoiseSchedule()).astype(np.float64)[t]
    snr = ac / (1 - ac)
    assert weighted == pytest.approx(np.mean(per_sample * np.minimum(snr, 5) / snr), rel=1e-5)
    assert weighted < plain
    huge_gamma = float(_denoising_loss(_context(snr_gamma=1e9), {}, frozen, batch, rng))
    assert huge_gamma == pytest.approx(plain, rel=1e-6)


def test_foreground_weight_is_a_weighted_mean_over_latent_pixels():
    """optim.foreground_weight: each latent pixel weighs 1 + (w - 1) x its patch's foreground share; the
    per-sample mean is normalised by the weights, so an all-background batch keeps plain MSE."""
    batch, rng = _cached_batch(), jax.random.key(2)
    frozen = {"empty_text": np.zeros((3, 8), np.float32)}
    foreground = np.zeros((16, 16, 16), np.float32)  # pixels: 4x4 patches per latent pixel
    foreground[:, :4, :4] = 1.0  # latent pixel (0, 0) wholly foreground
    foreground[:, 4:6, :4] = 1.0  # latent pixel (1, 0) half foreground
    plain = float(_denoising_loss(_context(), {}, frozen, batch, rng))
    background_only = {**batch, "foreground": np.zeros_like(foreground)}
    assert float(_denoising_loss(_context(foreground_weight=5.0), {}, frozen, background_only, rng)) == (
        pytest.approx(plain, rel=1e-6)
    )
    weighted = float(
        _denoising_loss(_context(foreground_weight=5.0), {}, frozen, {**batch, "foreground": foreground}, rng)
    )
    # the zero model's squared error is its noise target's square (epsilon schedule)
    _, rng_noise, _, _ = jax.random.split(rng, 4)
    squared = np.square(np.asarray(jax.random.normal(rng_noise, batch["latent_mean"].shape), np.float64))
    weights = np.ones((16, 4, 4, 1))
    weights[:, 0, 0], weights[:, 1, 0] = 5.0, 3.0
    per_sample = (weights * squared).sum(axis=(1, 2, 3)) / (np.broadcast_to(weights, squared.shape)).sum(
        axis=(1, 2, 3)
    )
    assert weighted == pytest.approx(per_sample.mean(), rel=1e-5)
    assert weighted != pytest.approx(plain, rel=1e-3)


def test_timestep_bias_draws_the_steps_timesteps():
    """optim.timestep_bias reaches the step: with v-prediction the zero model's loss depends on each
    sample's timestep, and it is the loss of the cubic draw (rebuilt from the same key), not the uniform."""
    from controlsprint.schedulers import sample_timesteps, training_target

    schedule = NoiseSchedule(prediction_type="v_prediction")
    batch, rng = _cached_batch(), jax.random.key(4)
    frozen = {"empty_text": np.zeros((3, 8), np.float32)}
    losses = {}
    for bias in ("uniform", "cubic"):
        ctx = _context(schedule=schedule, timestep_bias=bias)
        losses[bias] = float(_denoising_loss(ctx, {}, frozen, batch, rng))
    _, rng_noise, rng_t, _ = jax.random.split(rng, 4)
    noise = jax.random.normal(rng_noise, batch["latent_mean"].shape)
    for bias, loss in losses.items():
        t = sample_timesteps(schedule, rng_t, 16, bias)
        target = training_target(schedule, jnp.asarray(batch["latent_mean"]), noise, t)
        assert loss == pytest.approx(float(jnp.mean(jnp.square(target))), rel=1e-5)
    assert losses["cubic"] != pytest.approx(losses["uniform"], rel=1e-3)
