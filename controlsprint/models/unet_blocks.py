"""The UNet's down, mid and up blocks, and builders shared by the UNet and the ControlNet encoder."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.models.configs import EncoderConfig, UNetConfig
from controlsprint.models.layers import Downsample2D, ResnetBlock2D, Transformer2DModel, Upsample2D


def _resnets_and_transformers(block: nn.Module) -> tuple[list, list]:
    """A down or up block's `num_layers` resnets and, when `add_attention`, as many transformers
    (built in the block's `setup`, so they are named resnets_i / attentions_i, as in diffusers)."""
    resnets = [
        ResnetBlock2D(block.out_channels, block.groups, block.eps, dtype=block.dtype)
        for _ in range(block.num_layers)
    ]
    transformers = [
        Transformer2DModel(
            block.out_channels, block.heads, block.groups, block.use_linear_projection, block.dtype
        )
        for _ in range(block.num_layers if block.add_attention else 0)
    ]
    return resnets, transformers


class DownBlock(nn.Module):
    """`num_layers` resnets (each followed by a transformer when `add_attention`), then a stride-2 conv.

    Returns the output and every intermediate state, which the up path takes as skip connections.
    """

    out_channels: int
    num_layers: int
    add_attention: bool
    add_downsample: bool
    heads: int
    groups: int
    eps: float
    use_linear_projection: bool = False
    downsample_padding: int = 1
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.resnets, self.attentions = _resnets_and_transformers(self)
        if self.add_downsample:
            self.downsamplers = [Downsample2D(self.out_channels, self.downsample_padding, self.dtype)]

    def __call__(self, x, temb, context):
        states = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.add_attention:
                x = self.attentions[i](x, context)
            states.append(x)
        if self.add_downsample:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, tuple(states)


class MidBlock(nn.Module):
    """resnet -> transformer -> resnet at the lowest resolution."""

    channels: int
    heads: int
    groups: int
    eps: float
    use_linear_projection: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.resnets = [
            ResnetBlock2D(self.channels, self.groups, self.eps, dtype=self.dtype) for _ in range(2)
        ]
        self.attentions = [
            Transformer2DModel(self.channels, self.heads, self.groups, self.use_linear_projection, self.dtype)
        ]

    def __call__(self, x, temb, context):
        x = self.resnets[0](x, temb)
        x = self.attentions[0](x, context)
        return self.resnets[1](x, temb)


class UpBlock(nn.Module):
    """`num_layers` resnets, each fed the running state concatenated with one skip; then a x2 upsample."""

    out_channels: int
    num_layers: int
    add_attention: bool
    add_upsample: bool
    heads: int
    groups: int
    eps: float
    use_linear_projection: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.resnets, self.attentions = _resnets_and_transformers(self)
        if self.add_upsample:
            self.upsamplers = [Upsample2D(self.out_channels, self.dtype)]

    def __call__(self, x, skips, temb, context):
        # skips arrive in down-path order; the up path consumes them from the deepest one.
        for i, resnet in enumerate(self.resnets):
            x = resnet(jnp.concatenate([x, skips[-1 - i]], axis=-1), temb)
            if self.add_attention:
                x = self.attentions[i](x, context)
        if self.add_upsample:
            x = self.upsamplers[0](x)
        return x


def make_down_blocks(cfg: EncoderConfig, dtype: jnp.dtype, remat: bool = False) -> list[DownBlock]:
    block = nn.remat(DownBlock) if remat else DownBlock
    heads = cfg.heads_per_block()
    last = len(cfg.block_out_channels) - 1
    return [
        block(
            out_channels=channels,
            num_layers=cfg.layers_per_block,
            add_attention=kind == "CrossAttnDownBlock2D",
            add_downsample=i < last,
            heads=heads[i],
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            use_linear_projection=cfg.use_linear_projection,
            downsample_padding=cfg.downsample_padding,
            dtype=dtype,
        )
        for i, (kind, channels) in enumerate(zip(cfg.down_block_types, cfg.block_out_channels, strict=True))
    ]


def make_mid_block(cfg: EncoderConfig, dtype: jnp.dtype, remat: bool = False) -> MidBlock:
    block = nn.remat(MidBlock) if remat else MidBlock
    return block(
        cfg.block_out_channels[-1],
        cfg.heads_per_block()[-1],
        cfg.norm_num_groups,
        cfg.norm_eps,
        cfg.use_linear_projection,
        dtype,
    )


def make_up_blocks(cfg: UNetConfig, dtype: jnp.dtype, remat: bool = False) -> list[UpBlock]:
    block = nn.remat(UpBlock) if remat else UpBlock
    heads = tuple(reversed(cfg.heads_per_block()))
    channels = tuple(reversed(cfg.block_out_channels))
    last = len(channels) - 1
    return [
        block(
            out_channels=channels[i],
            num_layers=cfg.layers_per_block + 1,
            add_attention=kind == "CrossAttnUpBlock2D",
            add_upsample=i < last,
            heads=heads[i],
            groups=cfg.norm_num_groups,
            eps=cfg.norm_eps,
            use_linear_projection=cfg.use_linear_projection,
            dtype=dtype,
        )
        for i, kind in enumerate(cfg.up_block_types)
    ]


def broadcast_timesteps(timesteps: jax.Array | float, batch: int) -> jax.Array:
    """Timesteps as a [B] float array, whether given as a scalar or per sample."""
    t = jnp.asarray(timesteps, dtype=jnp.float32)
    return jnp.broadcast_to(t.reshape(-1), (batch,)) if t.size == 1 else t
