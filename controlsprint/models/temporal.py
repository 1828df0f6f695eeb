"""The video UNet's temporal layers: a 1D convolution and a self-attention over the frame axis.

They take activations with the frames folded into the batch, [B*F, H, W, C] (the layout the image
UNet's blocks run on), mix information across the F frames of each pixel, and hand back the same
layout. Both are residual and end in a zero-initialised projection, so at initialisation each returns
its input exactly: an inflated image model then gives, frame by frame, the image model's output, and
training starts from a working image model, as a ControlNet starts from its zero convolutions.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.layers import dot_product_attention, group_norm, timestep_embedding
from controlsprint.models.video_configs import VideoUNetConfig


def _zero_dense(features: int, dtype: jnp.dtype, name: str) -> nn.Dense:
    """The output projection: zero weights and bias, so the residual layer starts as the identity."""
    zeros = nn.initializers.zeros_init()
    return nn.Dense(features, dtype=dtype, name=name, kernel_init=zeros, bias_init=zeros)


def unfold_frames(x: jax.Array, frames: int) -> jax.Array:
    """[B*F, ...] -> [B, F, ...] (frames of one clip are consecutive in the folded batch)."""
    if x.shape[0] % frames:
        raise ValueError(f"batch {x.shape[0]} is not a whole number of {frames}-frame clips")
    return x.reshape(x.shape[0] // frames, frames, *x.shape[1:])


def _frame_sequences(video: jax.Array) -> jax.Array:
    """[B, F, H, W, C] -> [B*H*W, F, C]: one sequence of frames per pixel."""
    b, f, h, w, c = video.shape
    return video.transpose(0, 2, 3, 1, 4).reshape(b * h * w, f, c)


def _folded_frames(sequences: jax.Array, video_shape: tuple[int, ...]) -> jax.Array:
    """Inverse of `_frame_sequences`, straight to the folded layout [B*F, H, W, C]."""
    b, f, h, w, c = video_shape
    return sequences.reshape(b, h, w, f, c).transpose(0, 3, 1, 2, 4).reshape(b * f, h, w, c)


def frame_position_embedding(frames: int, channels: int) -> jax.Array:
    """Sinusoidal embedding of the frame index, [F, C]: parameter-free, so any clip length works."""
    return timestep_embedding(jnp.arange(frames), channels, flip_sin_to_cos=True, freq_shift=0)


class TemporalConv(nn.Module):
    """GroupNorm over the clip, a kernel-k conv along the frames (mixing channels), SiLU, zero Dense."""

    channels: int
    kernel_size: int
    groups: int
    eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, frames: int) -> jax.Array:
        # Statistics per clip (over frames and pixels), not per pixel: a pixel's few frames are too
        # few values to normalise by, and a one-frame clip would be normalised to nothing.
        video = group_norm(self.groups, self.eps, "norm")(unfold_frames(x, frames))
        pad = self.kernel_size // 2
        h = nn.Conv(self.channels, (self.kernel_size,), padding=((pad, pad),), dtype=self.dtype, name="conv")(
            _frame_sequences(video).astype(self.dtype)
        )
        h = _zero_dense(self.channels, self.dtype, "proj_out")(nn.silu(h))
        return x + _folded_frames(h, video.shape).astype(x.dtype)


class TemporalAttention(nn.Module):
    """GroupNorm over the clip, frame positions added, self-attention along the frames, zero to_out."""

    channels: int
    heads: int
    groups: int
    eps: float
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, frames: int) -> jax.Array:
        video = group_norm(self.groups, self.eps, "norm")(unfold_frames(x, frames))
        tokens = _frame_sequences(video) + frame_position_embedding(frames, self.channels)[None]
        tokens = tokens.astype(self.dtype)
        q, k, v = (
            nn.Dense(self.channels, use_bias=False, dtype=self.dtype, name=name)(tokens)
            for name in ("to_q", "to_k", "to_v")
        )
        out = dot_product_attention(q, k, v, self.heads)
        out = _zero_dense(self.channels, self.dtype, "to_out")(out)
        return x + _folded_frames(out, video.shape).astype(x.dtype)


class TemporalBlock(nn.Module):
    """What goes after one spatial block: a temporal conv, then a temporal attention."""

    channels: int
    heads: int
    kernel_size: int
    groups: int
    eps: float
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.conv = TemporalConv(self.channels, self.kernel_size, self.groups, self.eps, self.dtype)
        self.attention = TemporalAttention(self.channels, self.heads, self.groups, self.eps, self.dtype)

    def __call__(self, x: jax.Array, frames: int) -> jax.Array:
        return self.attention(self.conv(x, frames), frames)


class TemporalLayers(nn.Module):
    """One `TemporalBlock` per spatial block of the UNet: `down_i`, `mid`, `up_i` (the "temporal" subtree)."""

    config: VideoUNetConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg, unet = self.config, self.config.unet
        widths = unet.block_out_channels

        def block(channels: int) -> TemporalBlock:
            return TemporalBlock(
                channels,
                cfg.temporal_attention_heads,
                cfg.temporal_kernel_size,
                unet.norm_num_groups,
                unet.norm_eps,
                self.dtype,
            )

        self.down = [block(c) for c in widths]
        self.mid = block(widths[-1])
        self.up = [block(c) for c in reversed(widths)]  # up block i outputs the i-th deepest width

    def __call__(self, stage: str, index: int, x: jax.Array, frames: int) -> jax.Array:
        """The temporal block after spatial block `index` of `stage` ("down", "mid" or "up")."""
        if stage == "mid":
            return self.mid(x, frames)
        return {"down": self.down, "up": self.up}[stage][index](x, frames)

    def initialise(self) -> None:
        """Runs every block once on a one-pixel, one-frame clip: `init(rng, method=...)` then creates
        all temporal parameters without running (or allocating) the spatial model."""
        for block in (*self.down, self.mid, *self.up):
            block(jnp.zeros((1, 1, 1, block.channels), self.dtype), 1)
