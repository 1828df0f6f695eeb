"""Architecture configs of the Stable Diffusion 1.x family, named exactly like diffusers' config.json keys.

Field names follow the keys of diffusers' `config.json` (and transformers' for the text encoder), so a
real Stable Diffusion 1.5 folder's configs load with `from_dict(..., strict=False)`, and ours write
config.json files that diffusers reads. Each config has an SD1.5 default and a `tiny_*` variant used by
tests (a few hundred thousand parameters, runs in seconds on a CPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from controlsprint.config import from_dict
from controlsprint.errors import UserError

DownBlock = Literal["CrossAttnDownBlock2D", "DownBlock2D"]
UpBlock = Literal["CrossAttnUpBlock2D", "UpBlock2D"]


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """What the UNet and the ControlNet share: time embedding, conv_in, down path, mid block."""

    in_channels: int = 4  # 9 for inpainting UNets: noisy latents + mask + masked-image latents
    down_block_types: tuple[DownBlock, ...] = (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    )
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int = 768
    # diffusers' historic naming: for SD1.x `attention_head_dim` really is the number of heads.
    attention_head_dim: int | tuple[int, ...] = 8
    num_attention_heads: int | tuple[int, ...] | None = None
    use_linear_projection: bool = False  # SD2 uses Linear instead of 1x1 conv for proj_in/out
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    act_fn: Literal["silu"] = "silu"
    upcast_attention: bool = False

    def heads_per_block(self) -> tuple[int, ...]:
        heads = self.num_attention_heads or self.attention_head_dim
        return heads if isinstance(heads, tuple) else (heads,) * len(self.down_block_types)


@dataclasses.dataclass(frozen=True)
class UNetConfig(EncoderConfig):
    """`UNet2DConditionModel` (diffusers); SD1.5 values by default."""

    sample_size: int = 64
    out_channels: int = 4
    up_block_types: tuple[UpBlock, ...] = (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    )


@dataclasses.dataclass(frozen=True)
class ControlNetConfig(EncoderConfig):
    """`ControlNetModel` (diffusers): the UNet's encoder half plus conditioning embedding and zero convs."""

    conditioning_channels: int = 3
    conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)
    controlnet_conditioning_channel_order: Literal["rgb", "bgr"] = "rgb"
    global_pool_conditions: bool = False


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """`AutoencoderKL` (diffusers); SD1.5 values by default."""

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    sample_size: int = 512
    scaling_factor: float = 0.18215
    act_fn: Literal["silu"] = "silu"
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
    """transformers' `CLIPTextConfig`; the SD1.5 text encoder (CLIP ViT-L/14) by default."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: Literal["quick_gelu", "gelu"] = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 1


# Keys that change the architecture in ways these modules do not implement: refuse rather than load wrong.
_UNSUPPORTED: dict[str, Any] = {
    "class_embed_type": None,
    "addition_embed_type": None,
    "encoder_hid_dim": None,
    "time_cond_proj_dim": None,
    "time_embedding_type": "positional",
    "transformer_layers_per_block": 1,
    "only_cross_attention": False,
    "dual_cross_attention": False,
    "resnet_time_scale_shift": "default",
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "latents_mean": None,
    "shift_factor": None,
}
_VAE_BLOCKS = {"DownEncoderBlock2D", "UpDecoderBlock2D"}


def _check_supported(cls: type, data: Mapping[str, Any], source: str) -> None:
    for key, default in _UNSUPPORTED.items():
        value = data.get(key, default)
        if key == "transformer_layers_per_block" and isinstance(value, list) and set(value) == {1}:
            value = 1
        if value != default:
            raise UserError(f"{source}: {key}={value!r} is not supported by controlsprint's {cls.__name__}")
    if cls is VAEConfig:
        kinds = set(data.get("down_block_types", ())) | set(data.get("up_block_types", ()))
        if kinds - _VAE_BLOCKS:
            raise UserError(f"{source}: VAE block types {sorted(kinds - _VAE_BLOCKS)} are not supported")


def config_from_json(cls: type, data: Mapping[str, Any], source: str = "config.json"):
    """A model config from a diffusers/transformers config.json dict (bookkeeping keys ignored)."""
    _check_supported(cls, data, source)
    if cls is CLIPTextConfig and "text_config" in data:  # a full CLIPConfig: take its text half
        data = data["text_config"]
    return from_dict(cls, data, strict=False, source=source)


def config_to_json(cfg: Any, class_name: str) -> dict[str, Any]:
    """A config.json dict that diffusers (or transformers, for CLIP) reads back into the same architecture."""
    from controlsprint.config import to_dict

    data = {"_class_name": class_name, **to_dict(cfg)}
    if isinstance(cfg, VAEConfig):
        depth = len(cfg.block_out_channels)
        data["down_block_types"] = ["DownEncoderBlock2D"] * depth
        data["up_block_types"] = ["UpDecoderBlock2D"] * depth
    if isinstance(cfg, CLIPTextConfig):
        del data["_class_name"]
        data["architectures"] = ["CLIPTextModel"]
        data["model_type"] = "clip_text_model"
    return data


# --- named variants -------------------------------------------------------------------------------------

SD15_UNET = UNetConfig()
SD15_CONTROLNET = ControlNetConfig()
SD15_VAE = VAEConfig()
SD15_TEXT = CLIPTextConfig()

# Tiny: two resolution levels, 32/64 channels, 2 heads. The UNet keeps SD's 32 GroupNorm groups:
# diffusers' Flax UNet/ControlNet hard-code 32 groups, and they are a reference in the tests.
TINY_UNET = UNetConfig(
    sample_size=16,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(32, 64),
    layers_per_block=1,
    norm_num_groups=32,
    cross_attention_dim=32,
    attention_head_dim=2,
)

TINY_VAE = VAEConfig(
    block_out_channels=(16, 32, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=128
)
TINY_TEXT = CLIPTextConfig(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    projection_dim=32,
    bos_token_id=998,
    eos_token_id=999,
    pad_token_id=999,
)


# The embedded default model, sized for training on two CPU cores (about 69 minutes; the goal is 60): a
# 128 px, 8x VAE without mid attention (16x16x4 latents, as SD's 512 px -> 64x64), an SD-shaped three-level
# UNet (48/96/128 channels, cross-attention on the upper two levels), and a small
# CLIP-architecture text encoder with a 32-token context (the synthetic captions are short).
# GroupNorm groups are set by channels per group, not copied from SD: 16 groups on the VAE's 16-channel
# level were instance norm, which erases each picture's flat colours (a plain background normalises to
# zero before conv_out); the first build's VAE learnt at a third of the speed and kept a colour cast
# (13.6 vs 19.6 dB after 250 steps with 4 groups). SD's UNet has 10 channels per group; the UNet gets 8
# groups (6 channels each at its 48-channel level).
# The UNet keeps attention at its 16x16 level: the builds without it drew no shapes (docs/embedded-model.md);
# 48 channels there instead of the second build's 64 make its forward and backward pass 1.55x faster
# (0.76 vs 1.17 s for 32 samples on 2 cores) and its samples look the same.
EMBEDDED_VAE = VAEConfig(
    block_out_channels=(16, 32, 64, 64),
    layers_per_block=1,
    norm_num_groups=4,
    sample_size=128,
    mid_block_add_attention=False,
)
EMBEDDED_UNET = UNetConfig(
    sample_size=16,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(48, 96, 128),
    layers_per_block=1,
    cross_attention_dim=64,
    attention_head_dim=4,
    norm_num_groups=8,
)
EMBEDDED_TEXT = CLIPTextConfig(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=40,  # the longest synthetic caption, one token per word, is 39 with BOS and EOS
    projection_dim=64,
)
EMBEDDED_CONDITIONING_CHANNELS = (16, 32, 64, 128)  # three stride-2 steps: 128 px conditions -> 16x16 latents

# A measured alternative, not shipped (docs/embedded-model.md, sixth build): a 4x VAE (32x32x4 latents)
# whose reconstructions keep edges (canny F1 0.77 through it after 900 steps, 8x: 0.63 after 1500), and
# a four-level UNet for those latents, as narrow at 32x32 as two CPU cores allow (attention only at
# 8x8 and 4x4; 4 GroupNorm groups so the 16-channel level has 4 channels per group).
EMBEDDED_4X_VAE = dataclasses.replace(EMBEDDED_VAE, block_out_channels=(16, 32, 64))
EMBEDDED_4X_UNET = dataclasses.replace(
    EMBEDDED_UNET,
    sample_size=32,
    down_block_types=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    block_out_channels=(16, 32, 64, 128),
    norm_num_groups=4,
)
EMBEDDED_4X_CONDITIONING_CHANNELS = (8, 16, 32)  # two stride-2 steps: 128 px conditions -> 32x32 latents


def controlnet_config_from_unet(unet: UNetConfig, **changes: Any) -> ControlNetConfig:
    """The ControlNet config that mirrors a UNet's encoder (so it can be initialised from the UNet)."""
    shared = {f.name: getattr(unet, f.name) for f in dataclasses.fields(EncoderConfig)}
    shared["in_channels"] = 4 if unet.in_channels == 9 else unet.in_channels
    return ControlNetConfig(**{**shared, **changes})


TINY_CONTROLNET = controlnet_config_from_unet(TINY_UNET, conditioning_embedding_out_channels=(8, 16, 16, 32))
