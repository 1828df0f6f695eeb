"""Building blocks shared by the UNet, ControlNet and VAE (Flax linen, NHWC).

Submodule names are the PyTorch attribute names of diffusers, with list indices joined by an
underscore (`resnets.0` -> `resnets_0`, `to_out.0` -> `to_out_0`), so `convert.py` maps a diffusers
state dict onto these parameter trees by rule, with no per-model tables.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.attention import dot_product_attention
from controlsprint.models.winograd import conv3x3_same


def timestep_embedding(
    timesteps: jax.Array, dim: int, *, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10000.0
) -> jax.Array:
    """Sinusoidal embedding of (fractional) timesteps, [B] -> [B, dim], as in DDPM/diffusers."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    angles = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    return jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)


class Conv3x3(nn.Module):
    """3x3 convolution, zero padding 1, with `nn.Conv`'s parameters (`kernel` [3, 3, C, K], `bias`),
    initialisers and dtype rule. Stride 1 goes through `conv3x3_same`, which takes Winograd's form
    where it measured faster (see `winograd.py`)."""

    features: int
    strides: int = 1
    dtype: jnp.dtype = jnp.float32
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        x, kernel, bias = (a.astype(self.dtype) for a in (x, kernel, bias))
        if self.strides == 1:
            y = conv3x3_same(x, kernel)
        else:
            y = jax.lax.conv_general_dilated(
                x, kernel, (self.strides,) * 2, ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
            )
        return y + bias


def conv3x3(features: int, dtype: jnp.dtype, *, stride: int = 1, name: str | None = None, zero: bool = False):
    init = (
        {"kernel_init": nn.initializers.zeros_init(), "bias_init": nn.initializers.zeros_init()}
        if zero
        else {}
    )
    return Conv3x3(features, stride, dtype=dtype, name=name, **init)


def conv1x1(features: int, dtype: jnp.dtype, *, name: str | None = None, zero: bool = False):
    init = (
        {"kernel_init": nn.initializers.zeros_init(), "bias_init": nn.initializers.zeros_init()}
        if zero
        else {}
    )
    return nn.Conv(features, (1, 1), padding="VALID", dtype=dtype, name=name, **init)


class GroupNorm(nn.Module):
    """GroupNorm over channels-last activations, with flax's parameter names (`scale`, `bias`).

    Two-pass (centred) variance: the one-pass E[x^2]-E[x]^2 form drifts ~1e-4 from PyTorch on large
    activations. Written out rather than `nn.GroupNorm(use_fast_variance=False)`, whose XLA CPU program
    ran 3x slower than this one on the UNet's activations; statistics are float32 whatever the input.
    """

    num_groups: int
    epsilon: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        grouped = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(
            x.shape[0], -1, self.num_groups, channels // self.num_groups
        )
        centred = grouped - grouped.mean(axis=(1, 3), keepdims=True)
        variance = jnp.square(centred).mean(axis=(1, 3), keepdims=True)
        return (centred * jax.lax.rsqrt(variance + self.epsilon)).reshape(x.shape) * scale + bias


def group_norm(groups: int, eps: float, name: str | None = None) -> GroupNorm:
    return GroupNorm(num_groups=groups, epsilon=eps, name=name)


def layer_norm(eps: float = 1e-5, name: str | None = None) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class TimestepEmbedding(nn.Module):
    """linear_1 -> SiLU -> linear_2 on the sinusoidal embedding."""

    dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, emb: jax.Array) -> jax.Array:
        emb = nn.Dense(self.dim, dtype=self.dtype, name="linear_1")(emb)
        return nn.Dense(self.dim, dtype=self.dtype, name="linear_2")(nn.silu(emb))


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between (when given)."""

    out_channels: int
    groups: int = 32
    eps: float = 1e-5
    use_time_embedding: bool = True
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, temb: jax.Array | None = None) -> jax.Array:
        h = conv3x3(self.out_channels, self.dtype, name="conv1")(
            nn.silu(group_norm(self.groups, self.eps, "norm1")(x))
        )
        if self.use_time_embedding:
            h = (
                h
                + nn.Dense(self.out_channels, dtype=self.dtype, name="time_emb_proj")(nn.silu(temb))[
                    :, None, None
                ]
            )
        h = conv3x3(self.out_channels, self.dtype, name="conv2")(
            nn.silu(group_norm(self.groups, self.eps, "norm2")(h))
        )
        if x.shape[-1] != self.out_channels:
            x = conv1x1(self.out_channels, self.dtype, name="conv_shortcut")(x)
        return x + h


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv. `padding=0` is the VAE's variant: pad right/bottom by one, then a valid conv."""

    out_channels: int
    padding: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.padding == 0:
            x = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))
            return nn.Conv(self.out_channels, (3, 3), (2, 2), padding="VALID", dtype=self.dtype, name="conv")(
                x
            )
        return conv3x3(self.out_channels, self.dtype, stride=2, name="conv")(x)


class Upsample2D(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    out_channels: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return conv3x3(self.out_channels, self.dtype, name="conv")(x)


class Attention(nn.Module):
    """Self- or cross-attention (`context` given): to_q/to_k/to_v, then to_out.0."""

    heads: int
    head_dim: int
    out_dim: int
    qkv_bias: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        context = x if context is None else context
        inner = self.heads * self.head_dim
        q = nn.Dense(inner, use_bias=self.qkv_bias, dtype=self.dtype, name="to_q")(x)
        k = nn.Dense(inner, use_bias=self.qkv_bias, dtype=self.dtype, name="to_k")(context)
        v = nn.Dense(inner, use_bias=self.qkv_bias, dtype=self.dtype, name="to_v")(context)
        out = dot_product_attention(q, k, v, self.heads)
        return nn.Dense(self.out_dim, dtype=self.dtype, name="to_out_0")(out)


class GEGLU(nn.Module):
    """One Dense to twice the width; the second half, through GELU, gates the first."""

    inner_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden, gate = jnp.split(nn.Dense(self.inner_dim * 2, dtype=self.dtype, name="proj")(x), 2, axis=-1)
        return hidden * jax.nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
    """ff.net.0 (GEGLU) -> ff.net.2 (Dense); net.1 is a parameterless dropout in diffusers."""

    dim: int
    mult: int = 4
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.net_0 = GEGLU(self.dim * self.mult, self.dtype)
        self.net_2 = nn.Dense(self.dim, dtype=self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.net_2(self.net_0(x))


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention on the text, and GEGLU feed-forward, each residual."""

    dim: int
    heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        head_dim = self.dim // self.heads
        x = x + Attention(self.heads, head_dim, self.dim, dtype=self.dtype, name="attn1")(
            layer_norm(name="norm1")(x)
        )
        x = x + Attention(self.heads, head_dim, self.dim, dtype=self.dtype, name="attn2")(
            layer_norm(name="norm2")(x), context
        )
        return x + FeedForward(self.dim, dtype=self.dtype, name="ff")(layer_norm(name="norm3")(x))


class Transformer2DModel(nn.Module):
    """GroupNorm, project to tokens, one transformer block, project back, add the input."""

    channels: int
    heads: int
    groups: int = 32
    use_linear_projection: bool = False
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        project = (
            (lambda name: nn.Dense(self.channels, dtype=self.dtype, name=name))
            if self.use_linear_projection
            else (lambda name: conv1x1(self.channels, self.dtype, name=name))
        )
        hidden = group_norm(self.groups, 1e-6, "norm")(x)
        if self.use_linear_projection:
            hidden = project("proj_in")(hidden.reshape(b, h * w, c))
        else:
            hidden = project("proj_in")(hidden).reshape(b, h * w, self.channels)
        hidden = BasicTransformerBlock(self.channels, self.heads, self.dtype, name="transformer_blocks_0")(
            hidden, context
        )
        if self.use_linear_projection:
            hidden = project("proj_out")(hidden).reshape(b, h, w, c)
        else:
            hidden = project("proj_out")(hidden.reshape(b, h, w, self.channels))
        return hidden + x
