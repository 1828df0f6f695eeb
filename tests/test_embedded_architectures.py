"""The fresh architectures the embedded model's builds start from ("embedded", shipped, and
"embedded-4x", measured): their parts fit together at 128 px. Shapes only (jax.eval_shape), no compute."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from controlsprint.models import configs as C
from controlsprint.models.components import build_module
from controlsprint.training.models import ARCHITECTURES


@pytest.mark.parametrize("name, latent_size", [("embedded", 16), ("embedded-4x", 32)])
def test_vae_unet_and_controlnet_agree_on_the_latent_grid(name, latent_size):
    vae_cfg, unet_cfg, text_cfg, conditioning = ARCHITECTURES[name]
    cn_cfg = C.controlnet_config_from_unet(unet_cfg, conditioning_embedding_out_channels=conditioning)
    pixels = jax.ShapeDtypeStruct((2, 128, 128, 3), jnp.float32)
    rng = jax.random.key(0)

    vae = build_module(vae_cfg)
    mean, _ = jax.eval_shape(lambda x: vae.apply(vae.init(rng, x[:, :8, :8]), x, method=vae.encode), pixels)
    assert mean.shape == (2, latent_size, latent_size, vae_cfg.latent_channels)
    assert unet_cfg.sample_size == latent_size and text_cfg.hidden_size == unet_cfg.cross_attention_dim

    latents = jax.ShapeDtypeStruct(mean.shape, jnp.float32)
    context = jax.ShapeDtypeStruct((2, 7, unet_cfg.cross_attention_dim), jnp.float32)
    controlnet, unet = build_module(cn_cfg), build_module(unet_cfg)

    def controlled(z, ctx, cond):
        t = jnp.ones((2,))
        down, mid = controlnet.apply(controlnet.init(rng, z, t, ctx, cond), z, t, ctx, cond)
        out = unet.apply(unet.init(rng, z, t, ctx), z, t, ctx, down, mid)
        return down, out

    # the condition embedding downsamples 128 px conditions exactly onto the latent grid, and its
    # residuals have the shapes the UNet adds them at
    down, out = jax.eval_shape(controlled, latents, context, pixels)
    assert down[0].shape == (2, latent_size, latent_size, unet_cfg.block_out_channels[0])
    assert down[-1].shape[1] == latent_size // 2 ** (len(unet_cfg.block_out_channels) - 1)
    assert out.shape == latents.shape
