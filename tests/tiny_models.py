"""Tiny reference models built with diffusers/transformers (PyTorch) for parity and loading tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controlsprint.models.configs import TINY_CONTROLNET, TINY_TEXT, TINY_UNET, TINY_VAE, config_to_json


def _kwargs(cfg) -> dict:
    data = config_to_json(cfg, "x")
    return {
        k: v for k, v in data.items() if not k.startswith("_") and k not in ("architectures", "model_type")
    }


def torch_unet(seed: int = 0, config=TINY_UNET):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**_kwargs(config)).eval()


def torch_controlnet(seed: int = 1, *, perturb_zero_convs: bool = True, config=TINY_CONTROLNET):
    """A ControlNet whose zero convs are made non-zero, so its residuals actually test something."""
    import torch
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel(**_kwargs(config)).eval()
    if perturb_zero_convs:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return model


def torch_vae(seed: int = 2):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**_kwargs(TINY_VAE)).eval()


def torch_text_encoder(seed: int = 3):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**_kwargs(TINY_TEXT))).eval()


def save_torch(model, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def nchw(a) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(a), (0, 3, 1, 2)))


def to_torch(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a))


def nhwc(a) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(np.asarray(a), (0, 2, 3, 1)))


def torch_controlnet_unet(t_cn, t_unet, latents, timesteps, text, cond, scale=1.0, **controlnet_options):
    """diffusers' ControlNet then UNet on NHWC numpy inputs: the UNet's output, NHWC, and the
    ControlNet's (down residuals, mid residual) as torch tensors (NCHW)."""
    import torch

    t = to_torch
    with torch.no_grad():
        down, mid = t_cn(
            t(nchw(latents)),
            t(timesteps),
            t(text),
            t(nchw(cond)),
            scale,
            return_dict=False,
            **controlnet_options,
        )
        out = t_unet(
            t(nchw(latents)),
            t(timesteps),
            t(text),
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
        ).sample.numpy()
    return nhwc(out), (down, mid)
