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


def timestep_embedding(
    timesteps: jax.Array, dim: int, *, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10000.0
) -> jax.Array:
    """Sinusoidal embedding of (fractional) timesteps, [B] -> [B, dim], as in DDPM/diffusers."""
    half = dim // 2
    exponent = -math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / (half - freq_shift)
    angles = timesteps.astype(jnp.float32)[:, None] * jnp.exp(exponent)[None, :]
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    return jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)


def conv3x3(features: int, dtype: jnp.dtype, *, stride: int = 1, name: str | None = None, zero: bool = False):
    init = (
        {"kernel_init": nn.initializers.zeros_init(), "bias_init": nn.initializers.zeros_init()}
        if zero
        else {}
    )
    return nn.Conv(
        features, (3, 3), (stride, stride), padding=((1, 1), (1, 1)), dtype=dtype, name=name, **init
    )


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


# Attention scores per query chunk (float32 elements): 2 MiB, so a chunk's scores stay in the CPU
# caches between the matmul, the softmax and the weighted sum instead of streaming through memory.
SCORE_BLOCK = 1 << 19
MIN_QUERY_CHUNK = 32
# Query chunks shorter than this cost more in per-chunk overhead than they save in cache: a large batch
# goes through in groups of whole batch elements instead, each with chunks of at least this many queries
# (at 1024 tokens, 2 heads and a CFG batch of 8: 18-20 ms instead of 30 ms per attention).
GROUP_QUERY_CHUNK = 128
# Wide heads over long sequences (SD1.5's self-attention at 64x64 and 32x32 latents: head_dim x keys of
# 160k and 80k) go one head at a time, in chunks of this many queries, as plain 2-D matmuls: at 4096
# tokens x 8 heads the all-heads chunks had shrunk to 32 queries and the batched matmuls ran at a third
# of the machine's speed (1.08 s -> 0.53 s per attention for a CFG pair; 92 -> 54 ms at 1024 tokens).
# Below the threshold (narrow heads, cross-attention to a prompt) the per-head loop's overhead loses.
HEAD_QUERY_CHUNK = 256
HEAD_MIN_WORK = 1 << 16


def attention_path(b: int, tq: int, tk: int, heads: int, head_dim: int) -> str:
    """Which form `dot_product_attention` takes: "whole", "chunks", "groups" or "heads"."""
    if head_dim * tk >= HEAD_MIN_WORK and tq > HEAD_QUERY_CHUNK:
        return "heads"
    group = SCORE_BLOCK // (heads * tk * GROUP_QUERY_CHUNK)  # 0: even one element needs short chunks
    if 1 <= group < b and b % group == 0 and SCORE_BLOCK // (b * heads * tk) < GROUP_QUERY_CHUNK <= tq:
        return "groups"
    return "whole" if _query_chunk(b, heads, tk) >= tq else "chunks"


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, heads: int) -> jax.Array:
    """Multi-head attention on [B, T, H*D] projections; softmax in float32 whatever the compute dtype.

    Shaped for XLA's CPU backend, where the textbook form (scores [.., queries, keys], softmax over
    the minor axis) made self-attention at 32x32 latents most of the UNet's time:
    - scores are laid out keys-major, [B, H, keys, queries], so the softmax max reduces a non-minor
      axis, which XLA vectorises across the queries (the minor-axis reduction ran ~5x slower);
    - the softmax denominator comes out of the value matmul (a column of ones appended to V), and the
      normalisation divides D columns instead of keys x queries scores;
    - long sequences go in query chunks of at most SCORE_BLOCK scores (`lax.map`), which keeps each
      chunk's scores in cache and bounds the memory to one chunk (2-3x faster at 1024 tokens); a large
      batch goes in groups of batch elements so that the chunks stay long (GROUP_QUERY_CHUNK);
    - wide heads over long sequences go head by head (HEAD_QUERY_CHUNK), see `_attend_per_head`.
    `attention_path` says which form a shape takes.
    """
    b, tq, inner = q.shape
    tk, d = k.shape[1], inner // heads
    q, k, v = (x.reshape(b, x.shape[1], heads, d) for x in (q, k, v))
    q = q * jnp.asarray(1.0 / math.sqrt(d), q.dtype)
    v = jnp.concatenate([v, jnp.ones((b, tk, heads, 1), v.dtype)], axis=-1)
    path = attention_path(b, tq, tk, heads, d)
    if path == "heads":
        out = _attend_per_head(q, k, v)
    elif path == "groups":
        group = SCORE_BLOCK // (heads * tk * GROUP_QUERY_CHUNK)
        grouped = [x.reshape(b // group, group, *x.shape[1:]) for x in (q, k, v)]
        out = jax.lax.map(lambda qkv: _attend_in_chunks(*qkv), grouped).reshape(b, tq, heads, d)
    else:
        out = _attend_in_chunks(q, k, v)
    return out.reshape(b, tq, inner).astype(q.dtype)


def _query_chunk(b: int, heads: int, tk: int) -> int:
    return max(MIN_QUERY_CHUNK, SCORE_BLOCK // (b * heads * tk))


def _pad_to_chunks(q: jax.Array, chunk: int, axis: int) -> tuple[jax.Array, int]:
    """Pad the queries axis up to a multiple of `chunk`; returns the padded array and the count."""
    count = -(-q.shape[axis] // chunk)
    widths = [(0, 0)] * q.ndim
    widths[axis] = (0, count * chunk - q.shape[axis])
    return jnp.pad(q, widths), count


def _attend_per_head(q: jax.Array, k: jax.Array, v_ones: jax.Array) -> jax.Array:
    """One (batch element, head) at a time, queries in chunks: scores [chunk, keys], softmax over
    the keys. Same inputs and output layout as `_attend`."""
    b, tq, heads, d = q.shape
    flat = [x.transpose(0, 2, 1, 3).reshape(b * heads, x.shape[1], x.shape[3]) for x in (q, k, v_ones)]
    padded, count = _pad_to_chunks(flat[0], HEAD_QUERY_CHUNK, axis=1)
    chunks = padded.reshape(b * heads, count, HEAD_QUERY_CHUNK, d)

    def one_head(head):
        q_chunks, k_head, v_head = head

        def one_chunk(q_chunk):
            scores = jnp.matmul(q_chunk, k_head.T, preferred_element_type=jnp.float32)
            weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=1, keepdims=True)))
            out = jnp.matmul(weights.astype(v_head.dtype), v_head, preferred_element_type=jnp.float32)
            return out[:, :-1] / out[:, -1:]

        return jax.lax.map(one_chunk, q_chunks).reshape(count * HEAD_QUERY_CHUNK, d)

    out = jax.lax.map(one_head, (chunks, flat[1], flat[2]))[:, :tq]
    return out.reshape(b, heads, tq, d).transpose(0, 2, 1, 3)


def _attend_in_chunks(q: jax.Array, k: jax.Array, v_ones: jax.Array) -> jax.Array:
    """`_attend` over query chunks of at most SCORE_BLOCK scores each."""
    b, tq, heads, d = q.shape
    chunk = _query_chunk(b, heads, k.shape[1])
    if chunk >= tq:
        return _attend(q, k, v_ones)
    padded, count = _pad_to_chunks(q, chunk, axis=1)
    chunks = padded.reshape(b, count, chunk, heads, d).swapaxes(0, 1)
    out = jax.lax.map(lambda q_chunk: _attend(q_chunk, k, v_ones), chunks)
    return out.swapaxes(0, 1).reshape(b, count * chunk, heads, d)[:, :tq]


def _attend(q: jax.Array, k: jax.Array, v_ones: jax.Array) -> jax.Array:
    """Scaled queries [B, Tq, H, D], keys [B, Tk, H, D], values with a ones column [B, Tk, H, D+1]."""
    scores = jnp.einsum("bkhd,bqhd->bhkq", k, q, preferred_element_type=jnp.float32)
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=2, keepdims=True)))
    out = jnp.einsum(
        "bkhe,bhkq->bheq", v_ones, weights.astype(v_ones.dtype), preferred_element_type=jnp.float32
    )
    return (out[:, :, :-1] / out[:, :, -1:]).transpose(0, 3, 1, 2)


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
