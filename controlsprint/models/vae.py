"""AutoencoderKL in Flax: images <-> latents (8x smaller per side for SD, 4 channels).

`encode` returns the mean and log-variance of the latent Gaussian; `decode` maps (unscaled) latents
back to pixels in [-1, 1]. Pipelines multiply latents by `config.scaling_factor` after encoding and
divide before decoding, as diffusers does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.configs import VAEConfig
from controlsprint.models.layers import (
    Downsample2D,
    ResnetBlock2D,
    Upsample2D,
    conv1x1,
    conv3x3,
    dot_product_attention,
    group_norm,
)

VAE_EPS = 1e-6


class SpatialSelfAttention(nn.Module):
    """Single-head self-attention over all pixels, with its own GroupNorm, residual."""

    channels: int
    groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        tokens = group_norm(self.groups, VAE_EPS, "group_norm")(x).reshape(b, h * w, c)
        q, k, v = (nn.Dense(c, dtype=self.dtype, name=n)(tokens) for n in ("to_q", "to_k", "to_v"))
        out = nn.Dense(c, dtype=self.dtype, name="to_out_0")(dot_product_attention(q, k, v, heads=1))
        return x + out.reshape(b, h, w, c)


class VAEMidBlock(nn.Module):
    channels: int
    groups: int
    add_attention: bool = True
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.resnets = [
            ResnetBlock2D(self.channels, self.groups, VAE_EPS, use_time_embedding=False, dtype=self.dtype)
            for _ in range(2)
        ]
        if self.add_attention:
            self.attentions = [SpatialSelfAttention(self.channels, self.groups, self.dtype)]

    def __call__(self, x):
        x = self.resnets[0](x)
        if self.add_attention:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class ResampleBlock(nn.Module):
    """DownEncoderBlock2D / UpDecoderBlock2D: resnets, then an optional down- or upsampler."""

    out_channels: int
    num_layers: int
    groups: int
    resample: str | None  # "down", "up" or None
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.resnets = [
            ResnetBlock2D(self.out_channels, self.groups, VAE_EPS, use_time_embedding=False, dtype=self.dtype)
            for _ in range(self.num_layers)
        ]
        if self.resample == "down":
            self.downsamplers = [Downsample2D(self.out_channels, padding=0, dtype=self.dtype)]
        elif self.resample == "up":
            self.upsamplers = [Upsample2D(self.out_channels, self.dtype)]

    def __call__(self, x):
        for resnet in self.resnets:
            x = resnet(x)
        if self.resample == "down":
            x = self.downsamplers[0](x)
        elif self.resample == "up":
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    config: VAEConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        last = len(cfg.block_out_channels) - 1
        x = conv3x3(cfg.block_out_channels[0], self.dtype, name="conv_in")(x)
        for i, channels in enumerate(cfg.block_out_channels):
            resample = "down" if i < last else None
            x = ResampleBlock(
                channels,
                cfg.layers_per_block,
                cfg.norm_num_groups,
                resample,
                self.dtype,
                name=f"down_blocks_{i}",
            )(x)
        x = VAEMidBlock(
            cfg.block_out_channels[-1],
            cfg.norm_num_groups,
            cfg.mid_block_add_attention,
            self.dtype,
            name="mid_block",
        )(x)
        x = nn.silu(group_norm(cfg.norm_num_groups, VAE_EPS, "conv_norm_out")(x))
        return conv3x3(2 * cfg.latent_channels, self.dtype, name="conv_out")(x)


class Decoder(nn.Module):
    config: VAEConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, z):
        cfg = self.config
        channels = tuple(reversed(cfg.block_out_channels))
        x = conv3x3(channels[0], self.dtype, name="conv_in")(z)
        x = VAEMidBlock(
            channels[0], cfg.norm_num_groups, cfg.mid_block_add_attention, self.dtype, name="mid_block"
        )(x)
        for i, width in enumerate(channels):
            resample = "up" if i < len(channels) - 1 else None
            x = ResampleBlock(
                width,
                cfg.layers_per_block + 1,
                cfg.norm_num_groups,
                resample,
                self.dtype,
                name=f"up_blocks_{i}",
            )(x)
        x = nn.silu(group_norm(cfg.norm_num_groups, VAE_EPS, "conv_norm_out")(x))
        return conv3x3(cfg.out_channels, self.dtype, name="conv_out")(x)


class AutoencoderKL(nn.Module):
    config: VAEConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.encoder = Encoder(cfg, self.dtype)
        self.decoder = Decoder(cfg, self.dtype)
        if cfg.use_quant_conv:
            self.quant_conv = conv1x1(2 * cfg.latent_channels, self.dtype)
        if cfg.use_post_quant_conv:
            self.post_quant_conv = conv1x1(cfg.latent_channels, self.dtype)

    def encode(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        """NHWC pixels in [-1, 1] -> (mean, logvar) of the latent distribution (unscaled)."""
        moments = self.encoder(pixels.astype(self.dtype))
        if self.config.use_quant_conv:
            moments = self.quant_conv(moments)
        mean, logvar = jnp.split(moments.astype(jnp.float32), 2, axis=-1)
        return mean, jnp.clip(logvar, -30.0, 20.0)

    def decode(self, latents: jax.Array) -> jax.Array:
        """Unscaled NHWC latents -> pixels in roughly [-1, 1]."""
        z = latents.astype(self.dtype)
        if self.config.use_post_quant_conv:
            z = self.post_quant_conv(z)
        return self.decoder(z).astype(jnp.float32)

    def __call__(self, pixels: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        """Reconstruct: encode, sample (or take the mean without `rng`), decode."""
        mean, logvar = self.encode(pixels)
        z = mean if rng is None else sample_latents(mean, logvar, rng)
        return self.decode(z)


def sample_latents(mean: jax.Array, logvar: jax.Array, rng: jax.Array) -> jax.Array:
    """A draw from the encoder's diagonal Gaussian."""
    return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
