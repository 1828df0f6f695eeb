"""Pseudo-3D video UNet (Make-A-Video style): the image UNet, run on every frame, with temporal layers.

Layout. A clip's latents are [B, F, h, w, C], channels last like the image UNet. The frames are
folded into the batch ([B*F, h, w, C]) and go through the unchanged `UNet2DConditionModel`; through
its `after_block` hook a `TemporalBlock` (temporal conv + temporal attention, temporal.py) runs after
every down, mid and up block, unfolding the frames to mix them per pixel. A down block's output is
also its last skip connection, so the up path receives the temporally mixed state there too.

Parameters: {"spatial": <the image UNet's tree, names unchanged>, "temporal": {down_i, mid, up_i},
"hint_conv_in": {kernel}}. So an image checkpoint (our own or a converted SD1.5 one) becomes a video
model with `inflate(image_params, config, rng)`, renaming nothing.

Hint image. With `hint_concat`, the hint's latent [B, h, w, C] is concatenated to every frame's input
with one more channel, a mask that is 1 on frame 0 (the frame meant to show the hint) and 0 on the
others: every frame sees the image it should stay consistent with, and knows whether it is the hint
frame. That is a conv_in widened by C+1 input channels; the extra input channels' weights are kept
apart as `hint_conv_in` (same 3x3 kernel, no bias; its output is added to conv_in's), which computes
exactly the widened conv while leaving the image model's conv_in untouched (`widened_conv_in` gives
the single-conv form). They start at zero, so the hint changes nothing until trained, and a missing
hint (`hint_latent=None`) is the same as an all-zero hint and mask: the hint can be dropped in
training, like a prompt for guidance.

ControlNet residuals, optional, are per frame: each is [B, F, ...] (the ControlNet run on the folded
frames gives [B*F, ...]; reshape), so a control can steer some frames and be zero on others.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from controlsprint.errors import UserError
from controlsprint.models.temporal import TemporalLayers
from controlsprint.models.unet import UNet2DConditionModel
from controlsprint.models.unet_blocks import broadcast_timesteps
from controlsprint.models.video_configs import VideoUNetConfig


def hint_input_conv(config: VideoUNetConfig, dtype: jnp.dtype = jnp.float32) -> nn.Conv:
    """The hint's share of a widened conv_in: hint latent + mask channel -> conv_in's width, zero-init."""
    zeros = nn.initializers.zeros_init()
    return nn.Conv(
        config.unet.block_out_channels[0],
        (3, 3),
        padding=((1, 1), (1, 1)),
        use_bias=False,  # a widened conv_in has one bias, conv_in's own
        dtype=dtype,
        kernel_init=zeros,
        name="hint_conv_in",
    )


def _fold(x: jax.Array, clip: tuple[int, int], name: str) -> jax.Array:
    """[B, F, ...] -> [B*F, ...], checking the leading axes against the sample's (B, F)."""
    if x.ndim < 3 or tuple(x.shape[:2]) != clip:
        raise UserError(
            f"{name}: expected shape [{clip[0]}, {clip[1]}, ...] (batch, frames, ...), got {x.shape}"
        )
    return x.reshape(clip[0] * clip[1], *x.shape[2:])


class VideoUNet(nn.Module):
    config: VideoUNetConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False  # rematerialise each spatial block in the backward pass

    def setup(self):
        self.spatial = UNet2DConditionModel(self.config.unet, self.dtype, self.remat)
        self.temporal = TemporalLayers(self.config, self.dtype)
        if self.config.hint_concat:
            self.hint_conv_in = hint_input_conv(self.config, self.dtype)

    def __call__(
        self,
        sample: jax.Array,
        timesteps: jax.Array | float,
        encoder_hidden_states: jax.Array,
        down_block_additional_residuals: Sequence[jax.Array] | None = None,
        mid_block_additional_residual: jax.Array | None = None,
        hint_latent: jax.Array | None = None,
    ) -> jax.Array:
        """Noise prediction for a clip: sample [B, F, h, w, C], timesteps scalar or [B], text [B, L, D],
        optional per-frame ControlNet residuals ([B, F, ...] each) and hint latent [B, h, w, C_hint].
        Returns [B, F, h, w, out_channels] float32."""
        cfg = self.config
        if sample.ndim != 5 or sample.shape[-1] != cfg.unet.in_channels:
            raise UserError(
                f"sample: expected [batch, frames, height, width, {cfg.unet.in_channels}], got {sample.shape}"
            )
        clip = (sample.shape[0], sample.shape[1])
        frames = clip[1]
        if encoder_hidden_states.shape[0] != clip[0]:
            raise UserError(
                f"encoder_hidden_states: batch {encoder_hidden_states.shape[0]} != sample batch {clip[0]}"
            )
        # Every frame of a clip shares its clip's timestep and text.
        timesteps = jnp.repeat(broadcast_timesteps(timesteps, clip[0]), frames)
        context = jnp.repeat(encoder_hidden_states, frames, axis=0)
        hint = self._hint_input(hint_latent, sample.shape)
        down = mid = None
        if down_block_additional_residuals is not None:
            down = [
                _fold(r, clip, f"down_block_additional_residuals[{i}]")
                for i, r in enumerate(down_block_additional_residuals)
            ]
        if mid_block_additional_residual is not None:
            mid = _fold(mid_block_additional_residual, clip, "mid_block_additional_residual")

        def after_block(stage: str, index: int, x: jax.Array) -> jax.Array:
            if stage == "conv_in":
                return x if hint is None else x + self.hint_conv_in(hint)
            return self.temporal(stage, index, x, frames)

        out = self.spatial(
            _fold(sample, clip, "sample"), timesteps, context, down, mid, after_block=after_block
        )
        return out.reshape(*clip, *out.shape[1:])

    def _hint_input(self, hint_latent: jax.Array | None, sample_shape: tuple[int, ...]) -> jax.Array | None:
        """The hint latent on every frame plus the hint-frame mask channel, folded: [B*F, h, w, C+1]."""
        if hint_latent is None:
            return None
        cfg = self.config
        b, f, h, w, _ = sample_shape
        if not cfg.hint_concat:
            raise UserError("hint_latent: this video UNet has no hint input (config hint_concat=False)")
        if tuple(hint_latent.shape) != (b, h, w, cfg.hint_channels):
            raise UserError(
                f"hint_latent: expected shape {(b, h, w, cfg.hint_channels)}, got {hint_latent.shape}"
            )
        latent = jnp.broadcast_to(hint_latent[:, None].astype(self.dtype), (b, f, h, w, cfg.hint_channels))
        is_hint_frame = (jnp.arange(f) == 0).astype(self.dtype)
        mask = jnp.broadcast_to(is_hint_frame[None, :, None, None, None], (b, f, h, w, 1))
        return jnp.concatenate([latent, mask], axis=-1).reshape(b * f, h, w, cfg.hint_channels + 1)


def inflate(unet2d_params: dict, config: VideoUNetConfig, rng: jax.Array) -> dict:
    """Video UNet parameters from an image UNet's: the image tree kept as it is (the same arrays) under
    "spatial", fresh temporal layers whose output projections are zero, and a zero hint conv."""
    _check_image_params(unet2d_params, config)
    temporal_rng, hint_rng = jax.random.split(rng)
    # Eagerly: a handful of small random arrays, cheaper than compiling an init program.
    temporal = TemporalLayers(config).init(temporal_rng, method=TemporalLayers.initialise)["params"]
    params = {"spatial": unet2d_params, "temporal": temporal}
    if config.hint_concat:
        hint_input = jnp.zeros((1, 1, 1, config.hint_channels + 1))
        params["hint_conv_in"] = hint_input_conv(config).init(hint_rng, hint_input)["params"]
    return params


def widened_conv_in(params: dict) -> dict:
    """conv_in and hint_conv_in as the one conv they compute: input channels [latent, hint, mask].

    For a consumer that wants a single wider conv_in (as inpainting UNets have, in_channels=9)."""
    conv_in = params["spatial"]["conv_in"]
    kernel = jnp.concatenate([conv_in["kernel"], params["hint_conv_in"]["kernel"]], axis=2)
    return {"kernel": kernel, "bias": conv_in["bias"]}


def init_video_params(config: VideoUNetConfig, seed: int = 0) -> dict:
    """A freshly initialised image UNet of `config.unet`, inflated (mostly for tests and from-scratch runs)."""
    from controlsprint.models.components import init_params

    return inflate(init_params(config.unet, seed), config, jax.random.key(seed + 1))


def _check_image_params(params: dict, config: VideoUNetConfig) -> None:
    from controlsprint.models.components import abstract_params
    from controlsprint.models.convert import flatten

    expected = {k: tuple(v.shape) for k, v in flatten(abstract_params(config.unet)).items()}
    given = {k: tuple(jnp.shape(v)) for k, v in flatten(params).items()}
    for key in sorted(expected.keys() | given.keys()):
        if expected.get(key) != given.get(key):
            raise UserError(
                f"inflate: image UNet parameter {'/'.join(key)} has shape {given.get(key)}, "
                f"config.unet expects {expected.get(key)}"
            )
