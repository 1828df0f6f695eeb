"""Config of the pseudo-3D video UNet (video_unet.py): an image UNet's config plus the temporal parts.

Kept apart from configs.py, whose configs mirror diffusers' config.json keys: this one has no diffusers
counterpart. The spatial half is an unchanged `UNetConfig`, so an image checkpoint's config is reused
as it is and only the fields below are new.
"""

from __future__ import annotations

import dataclasses

from controlsprint.errors import UserError
from controlsprint.models.configs import SD15_UNET, TINY_UNET, UNetConfig


@dataclasses.dataclass(frozen=True)
class VideoUNetConfig:
    """`VideoUNet`: the image UNet `unet`, with temporal layers after each of its blocks."""

    unet: UNetConfig = SD15_UNET  # the spatial model, exactly as the image checkpoint's config says
    frames: int = 16  # default clip length (Make-A-Video's 16); the model itself takes any frame count
    temporal_attention_heads: int = 8  # heads of the attention over frames; must divide every block width
    temporal_kernel_size: int = 3  # odd: frames are zero-padded at both ends, so the clip length is kept
    # The hint image's latent goes, with a "this is the hint frame" mask channel, into every frame.
    hint_concat: bool = True
    hint_channels: int = 4  # channels of the hint latent (the VAE's latent channels)

    def __post_init__(self):
        if self.frames < 1:
            raise UserError(f"video UNet config: frames={self.frames} must be at least 1")
        if self.temporal_kernel_size < 1 or self.temporal_kernel_size % 2 == 0:
            raise UserError(
                f"video UNet config: temporal_kernel_size={self.temporal_kernel_size} must be odd and positive"
            )
        if self.hint_channels < 1:
            raise UserError(f"video UNet config: hint_channels={self.hint_channels} must be at least 1")
        for width in self.unet.block_out_channels:
            if width % self.temporal_attention_heads:
                raise UserError(
                    f"video UNet config: temporal_attention_heads={self.temporal_attention_heads} "
                    f"does not divide block width {width}"
                )


SD15_VIDEO_UNET = VideoUNetConfig()

# Tiny, for tests: the tiny image UNet (32/64 channels), 2 temporal heads, 3-frame clips.
TINY_VIDEO_UNET = VideoUNetConfig(unet=TINY_UNET, frames=3, temporal_attention_heads=2)
