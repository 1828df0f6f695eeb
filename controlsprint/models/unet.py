"""UNet2DConditionModel in Flax: predicts the noise (or velocity) of a latent, given time and text.

Input and output latents are NHWC. ControlNet residuals, when given, are added to the skip
connections (one per down-path state) and to the mid block output, as in diffusers.

`after_block`, when given, is called on the output of conv_in and of every down, mid and up block
(`after_block(stage, index, x) -> x`, stage one of "conv_in", "down", "mid", "up"); the video UNet
(video_unet.py) uses it to insert its temporal layers and hint input without copying this loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.configs import UNetConfig
from controlsprint.models.layers import TimestepEmbedding, conv3x3, group_norm, timestep_embedding
from controlsprint.models.unet_blocks import (
    broadcast_timesteps,
    make_down_blocks,
    make_mid_block,
    make_up_blocks,
)

# after_block(stage, index, x) -> x; see the module docstring.
BlockHook = Callable[[str, int, jax.Array], jax.Array]


def _unchanged(stage: str, index: int, x: jax.Array) -> jax.Array:
    return x


class UNet2DConditionModel(nn.Module):
    config: UNetConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # rematerialise each block in the backward pass (trades compute for memory)

    def setup(self):
        cfg = self.config
        self.time_embedding = TimestepEmbedding(cfg.block_out_channels[0] * 4, self.dtype)
        self.conv_in = conv3x3(cfg.block_out_channels[0], self.dtype)
        self.down_blocks = make_down_blocks(cfg, self.dtype, self.remat)
        self.mid_block = make_mid_block(cfg, self.dtype, self.remat)
        self.up_blocks = make_up_blocks(cfg, self.dtype, self.remat)
        self.conv_norm_out = group_norm(cfg.norm_num_groups, cfg.norm_eps)
        self.conv_out = conv3x3(cfg.out_channels, self.dtype)

    def embed_time(self, timesteps: jax.Array | float, batch: int) -> jax.Array:
        cfg = self.config
        t = broadcast_timesteps(timesteps, batch)
        emb = timestep_embedding(
            t, cfg.block_out_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift
        )
        return self.time_embedding(emb.astype(self.dtype))

    def __call__(
        self,
        sample: jax.Array,
        timesteps: jax.Array | float,
        encoder_hidden_states: jax.Array,
        down_block_additional_residuals: Sequence[jax.Array] | None = None,
        mid_block_additional_residual: jax.Array | None = None,
        *,
        after_block: BlockHook | None = None,
    ) -> jax.Array:
        hook = after_block or _unchanged
        temb = self.embed_time(timesteps, sample.shape[0])
        context = encoder_hidden_states.astype(self.dtype)
        x = hook("conv_in", 0, self.conv_in(sample.astype(self.dtype)))
        skips = [x]
        for i, block in enumerate(self.down_blocks):
            x, states = block(x, temb, context)
            # A block's output is also its last skip state; the hook's result replaces both.
            x = hook("down", i, x)
            skips.extend((*states[:-1], x))
        if down_block_additional_residuals is not None:
            if len(down_block_additional_residuals) != len(skips):
                raise ValueError(
                    f"expected {len(skips)} ControlNet residuals, got {len(down_block_additional_residuals)}"
                )
            skips = [
                s + r.astype(s.dtype) for s, r in zip(skips, down_block_additional_residuals, strict=True)
            ]
        x = hook("mid", 0, self.mid_block(x, temb, context))
        if mid_block_additional_residual is not None:
            x = x + mid_block_additional_residual.astype(x.dtype)
        for i, block in enumerate(self.up_blocks):
            take = block.num_layers
            x = hook("up", i, block(x, skips[-take:], temb, context))
            skips = skips[:-take]
        x = nn.silu(self.conv_norm_out(x))
        return self.conv_out(x).astype(jnp.float32)
