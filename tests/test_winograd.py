"""Winograd F(2x2, 3x3) convolutions equal the direct convolution, take the fast form only where it
was measured to pay, keep the direct convolution's gradients, and keep the models equal to diffusers."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from controlsprint.models import winograd
from controlsprint.models.winograd import conv3x3_same, use_winograd


def _direct(x, kernel):
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def _inputs(shape, out_channels, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    scale = 1.0 / np.sqrt(9 * shape[-1])
    kernel = jnp.asarray(rng.standard_normal((3, 3, shape[-1], out_channels)) * scale, jnp.float32)
    return x, kernel


@pytest.mark.parametrize(
    ("shape", "out_channels"),
    [((1, 32, 32, 64), 64), ((2, 16, 32, 96), 64), ((1, 64, 16, 64), 128), ((4, 16, 16, 80), 72)],
)
def test_winograd_equals_the_direct_convolution(shape, out_channels):
    x, kernel = _inputs(shape, out_channels)
    assert use_winograd(x.shape, kernel.shape, x.dtype)
    ours = np.asarray(jax.jit(conv3x3_same)(x, kernel))
    reference = np.asarray(_direct(x, kernel))
    assert ours.shape == reference.shape
    # float32 rounding of the transforms: a few 1e-6 on outputs of order 1
    np.testing.assert_allclose(ours, reference, atol=2e-5, rtol=0)
    assert np.abs(reference).max() > 1.0


def test_every_output_position_is_right_including_the_borders():
    # A single 1 at each corner and edge of a small image: the zero padding must hold at every side.
    x = jnp.zeros((1, 32, 32, 64), jnp.float32)
    x = x.at[0, 0, 0].set(1.0).at[0, 31, 31].set(1.0).at[0, 0, 17].set(1.0).at[0, 16, 31].set(1.0)
    _, kernel = _inputs(x.shape, 64, seed=3)
    np.testing.assert_allclose(np.asarray(conv3x3_same(x, kernel)), np.asarray(_direct(x, kernel)), atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "kernel_shape", "dtype", "why"),
    [
        ((1, 31, 32, 64), (3, 3, 64, 64), jnp.float32, "odd height"),
        ((1, 32, 32, 32), (3, 3, 32, 64), jnp.float32, "too few input channels"),
        ((1, 32, 32, 64), (3, 3, 64, 4), jnp.float32, "too few output channels"),
        ((1, 16, 16, 1280), (3, 3, 1280, 1280), jnp.float32, "too few pixels for the kernel transform"),
        ((1, 512, 512, 128), (3, 3, 128, 128), jnp.float32, "too many pixels for the caches"),
        ((1, 32, 32, 64), (3, 3, 64, 64), jnp.bfloat16, "bfloat16 transforms lose precision"),
    ],
)
def test_direct_form_where_winograd_does_not_pay(shape, kernel_shape, dtype, why):
    assert not use_winograd(shape, kernel_shape, dtype), why


def test_direct_form_gives_the_direct_convolution_exactly():
    x, kernel = _inputs((1, 16, 16, 1280), 8)
    assert not use_winograd(x.shape, kernel.shape, x.dtype)
    np.testing.assert_array_equal(np.asarray(conv3x3_same(x, kernel)), np.asarray(_direct(x, kernel)))


def test_gradients_are_the_direct_convolutions():
    x, kernel = _inputs((2, 32, 32, 64), 64)
    cotangent = jnp.asarray(np.random.default_rng(5).standard_normal((2, 32, 32, 64)), jnp.float32)

    def loss(conv):
        return lambda x, k: jnp.vdot(conv(x, k), cotangent)

    ours = jax.grad(loss(conv3x3_same), argnums=(0, 1))(x, kernel)
    reference = jax.grad(loss(_direct), argnums=(0, 1))(x, kernel)
    for a, b in zip(ours, reference, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_wide_controlnet_and_unet_still_match_diffusers(tmp_path, monkeypatch):
    """The tiny parity models are too small for the Winograd form; this one is wide enough (64
    channels, 32x32 latents) that its first level takes it, and must still equal diffusers to 1e-4."""
    pytest.importorskip("torch")
    from controlsprint.models.configs import TINY_UNET, controlnet_config_from_unet
    from controlsprint.models.io import load_component
    from tests import tiny_models

    unet_cfg = dataclasses.replace(TINY_UNET, block_out_channels=(64, 64), sample_size=32)
    cn_cfg = controlnet_config_from_unet(unet_cfg, conditioning_embedding_out_channels=(8, 16, 16, 32))
    t_unet = tiny_models.torch_unet(config=unet_cfg)
    t_cn = tiny_models.torch_controlnet(config=cn_cfg)
    unet = load_component(tiny_models.save_torch(t_unet, tmp_path / "unet"), "unet")
    cn = load_component(tiny_models.save_torch(t_cn, tmp_path / "controlnet"), "controlnet")

    calls = []
    real = winograd._winograd_conv
    monkeypatch.setattr(winograd, "_winograd_conv", lambda x, k: calls.append(x.shape) or real(x, k))

    rng = np.random.default_rng(0)
    latents = rng.standard_normal((1, 32, 32, 4)).astype(np.float32)
    text = rng.standard_normal((1, 7, 32)).astype(np.float32)
    cond = rng.random((1, 256, 256, 3)).astype(np.float32)
    steps = np.array([321.0], np.float32)
    down, mid = cn.module().apply({"params": cn.params}, latents, steps, text, cond, 1.0)
    out = unet.module().apply({"params": unet.params}, latents, steps, text, down, mid)
    assert len(calls) >= 8, "the wide models must take the Winograd form"
    reference, _ = tiny_models.torch_controlnet_unet(t_cn, t_unet, latents, steps, text, cond)
    np.testing.assert_allclose(np.asarray(out), reference, atol=1e-4)
    assert np.abs(reference).max() > 0.1
