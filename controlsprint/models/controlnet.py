"""ControlNetModel in Flax: a trainable copy of the UNet encoder steered by a condition image.

The condition image (pixels, 8x the latent size, values in [0, 1]) goes through a small conv stack
whose last conv starts at zero; every output goes through a zero-initialised 1x1 conv. So at
initialisation the ControlNet adds exactly nothing to the UNet: the controlled model equals the
base model at step 0, which is what lets training start from a working text-to-image model.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.configs import ControlNetConfig
from controlsprint.models.layers import TimestepEmbedding, conv1x1, conv3x3, timestep_embedding
from controlsprint.models.unet_blocks import broadcast_timesteps, make_down_blocks, make_mid_block


class ControlNetConditioningEmbedding(nn.Module):
    """Condition pixels -> latent-resolution features: conv stack with stride-2 steps, zero-init output."""

    out_channels: int
    block_out_channels: tuple[int, ...]
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        channels = self.block_out_channels
        self.conv_in = conv3x3(channels[0], self.dtype)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
            blocks += [conv3x3(c_in, self.dtype), conv3x3(c_out, self.dtype, stride=2)]
        self.blocks = blocks
        self.conv_out = conv3x3(self.out_channels, self.dtype, zero=True)

    def __call__(self, cond: jax.Array) -> jax.Array:
        x = nn.silu(self.conv_in(cond))
        for block in self.blocks:
            x = nn.silu(block(x))
        return self.conv_out(x)


class ControlNetModel(nn.Module):
    config: ControlNetConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    def setup(self):
        cfg = self.config
        self.time_embedding = TimestepEmbedding(cfg.block_out_channels[0] * 4, self.dtype)
        self.conv_in = conv3x3(cfg.block_out_channels[0], self.dtype)
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            cfg.block_out_channels[0], cfg.conditioning_embedding_out_channels, self.dtype
        )
        self.down_blocks = make_down_blocks(cfg, self.dtype, self.remat)
        self.mid_block = make_mid_block(cfg, self.dtype, self.remat)
        # One zero conv per skip state of the UNet: conv_in output, each layer, each downsample.
        widths = [cfg.block_out_channels[0]]
        for i, channels in enumerate(cfg.block_out_channels):
            widths += [channels] * (cfg.layers_per_block + (i < len(cfg.block_out_channels) - 1))
        self.controlnet_down_blocks = [conv1x1(w, self.dtype, zero=True) for w in widths]
        self.controlnet_mid_block = conv1x1(cfg.block_out_channels[-1], self.dtype, zero=True)

    def embed_condition(self, controlnet_cond: jax.Array) -> jax.Array:
        """Condition pixels [B, H, W, C] in [0, 1] -> features at the latent resolution.

        They depend on neither the latents nor the timestep, so a sampler computes them once per
        condition image, outside its loop, and passes them as `condition_embedding`.
        """
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = controlnet_cond[..., ::-1]
        return self.controlnet_cond_embedding(controlnet_cond.astype(self.dtype))

    def __call__(
        self,
        sample: jax.Array,
        timesteps: jax.Array | float,
        encoder_hidden_states: jax.Array,
        controlnet_cond: jax.Array | None = None,
        conditioning_scale: jax.Array | float = 1.0,
        guess_mode: bool = False,
        *,
        condition_embedding: jax.Array | None = None,
    ) -> tuple[tuple[jax.Array, ...], jax.Array]:
        """Returns (down residuals, mid residual), already multiplied by `conditioning_scale`.

        Give the condition as pixels (`controlnet_cond`) or as `embed_condition`'s output
        (`condition_embedding`, batch 1 or the sample's batch).
        """
        cfg = self.config
        if condition_embedding is None:
            condition_embedding = self.embed_condition(controlnet_cond)
        t = broadcast_timesteps(timesteps, sample.shape[0])
        emb = timestep_embedding(
            t, cfg.block_out_channels[0], flip_sin_to_cos=cfg.flip_sin_to_cos, freq_shift=cfg.freq_shift
        )
        temb = self.time_embedding(emb.astype(self.dtype))
        context = encoder_hidden_states.astype(self.dtype)
        x = self.conv_in(sample.astype(self.dtype))
        x = x + condition_embedding.astype(self.dtype)
        states = [x]
        for block in self.down_blocks:
            x, block_states = block(x, temb, context)
            states.extend(block_states)
        x = self.mid_block(x, temb, context)
        down = [conv(s) for conv, s in zip(self.controlnet_down_blocks, states, strict=True)]
        mid = self.controlnet_mid_block(x)
        if guess_mode and not cfg.global_pool_conditions:
            # Without a prompt to lean on, shallow residuals are damped: 0.1 at the top up to 1 at mid.
            scales = jnp.logspace(-1.0, 0.0, len(down) + 1) * conditioning_scale
            down = [d * s for d, s in zip(down, scales[:-1], strict=True)]
            mid = mid * scales[-1]
        else:
            down = [d * conditioning_scale for d in down]
            mid = mid * conditioning_scale
        if cfg.global_pool_conditions:
            down = [jnp.mean(d, axis=(1, 2), keepdims=True) for d in down]
            mid = jnp.mean(mid, axis=(1, 2), keepdims=True)
        return tuple(d.astype(jnp.float32) for d in down), mid.astype(jnp.float32)


# The layers every residual leaves the ControlNet through: 1x1 convolutions, so scaling their kernel
# and bias by g scales every residual by g, exactly what `conditioning_scale=g` does at inference.
OUTPUT_LAYER_PREFIXES = ("controlnet_down_blocks_", "controlnet_mid_block")


def with_output_gain(params: dict, gain: float) -> dict:
    """`params` with the ControlNet's output convolutions scaled by `gain` (a new tree; leaves shared
    where unchanged): the same model run at scale 1 then acts as the original at scale `gain`."""
    if not any(name.startswith(OUTPUT_LAYER_PREFIXES) for name in params):
        raise ValueError("not a ControlNet parameter tree: no controlnet_down_blocks_*/controlnet_mid_block")
    return {
        name: jax.tree_util.tree_map(lambda leaf: leaf * gain, layer)
        if name.startswith(OUTPUT_LAYER_PREFIXES)
        else layer
        for name, layer in params.items()
    }
