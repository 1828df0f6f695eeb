"""The three systems bench/inference.py compares, on one tiny SD-architecture ControlNet pipeline.

`build_folders` makes the weights (ours, and the same exported to PyTorch-diffusers safetensors);
`ours_runner`, `flax_runner` and `torch_runner` each return `run(batch, latents) -> uint8 images`
going from prompt strings to pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from controlsprint.schedulers import SD15_SCHEDULER_CONFIG

PROMPTS = ("a red circle above a blue square", "a hand", "a cat on a table", "two thumbs up")


def bench_configs(size: int) -> dict:
    """The tiny SD-architecture models: SD1.5's block layout (4 levels, 2 layers per block, cross-attention
    in the top three), 32 GroupNorm groups (diffusers' Flax models hard-code 32), narrow channels."""
    from controlsprint.models.configs import (
        TINY_TEXT,
        TINY_VAE,
        UNetConfig,
        controlnet_config_from_unet,
    )

    unet = UNetConfig(
        sample_size=size // 8,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=2,
        norm_num_groups=32,
        cross_attention_dim=32,
        attention_head_dim=2,  # heads, in diffusers' SD1.x naming
    )
    return {
        "unet": unet,
        "controlnet": controlnet_config_from_unet(
            unet, conditioning_embedding_out_channels=(16, 32, 96, 256)
        ),
        "vae": TINY_VAE.__class__(**{**TINY_VAE.__dict__, "sample_size": size}),
        "text_encoder": TINY_TEXT,
    }


def bench_tokenizer():
    """A byte-level CLIP BPE vocabulary (no merges beyond single bytes) with 77-token prompts."""
    from controlsprint.models.tokenizer import BOS, EOS, CLIPTokenizer, byte_to_unicode

    chars = list(byte_to_unicode().values())
    symbols = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    return CLIPTokenizer({s: i for i, s in enumerate(symbols)}, [], max_length=77)


def build_folders(root: Path, size: int) -> tuple[Path, Path]:
    """Random weights saved in our layout (`ours/`) and exported to PyTorch-diffusers (`pt/`)."""
    import jax

    from controlsprint.models.components import init_params
    from controlsprint.models.export import export
    from controlsprint.models.io import Component
    from controlsprint.models.pipeline import Pipeline, save_pipeline

    configs = bench_configs(size)
    tokenizer = bench_tokenizer()
    configs["text_encoder"] = configs["text_encoder"].__class__(
        **{
            **configs["text_encoder"].__dict__,
            "vocab_size": len(tokenizer.vocab),
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
        }
    )
    params = {kind: init_params(cfg, seed) for seed, (kind, cfg) in enumerate(configs.items())}
    # Nudge every ControlNet weight: its zero convolutions start at zero, and live ones make the
    # residuals carry real values into the UNet.
    noise = np.random.default_rng(0)
    params["controlnet"] = jax.tree_util.tree_map(
        lambda x: np.asarray(x) + 0.02 * noise.standard_normal(x.shape).astype(np.float32),
        params["controlnet"],
    )
    pipe = Pipeline(
        **{kind: Component(kind, configs[kind], params[kind]) for kind in ("unet", "vae", "text_encoder")},
        tokenizer=tokenizer,
        scheduler_config=dict(SD15_SCHEDULER_CONFIG),
        controlnets={"canny": Component("controlnet", configs["controlnet"], params["controlnet"])},
    )
    ours = save_pipeline(root / "ours", pipe)
    return ours, export(ours, root / "pt", fmt="pytorch")


def condition_image(size: int) -> np.ndarray:
    """A canny-like condition: white outlines of a circle and a square on black."""
    yy, xx = np.mgrid[:size, :size]
    circle = np.abs(np.hypot(yy - size * 0.3, xx - size * 0.5) - size * 0.18) < 1.5
    square = (np.abs(yy - size * 0.72) < size * 0.15) & (np.abs(xx - size * 0.5) < size * 0.15)
    square &= ~((np.abs(yy - size * 0.72) < size * 0.15 - 3) & (np.abs(xx - size * 0.5) < size * 0.15 - 3))
    return np.repeat(((circle | square) * 255).astype(np.uint8)[..., None], 3, axis=-1)


def ours_request(condition: np.ndarray, batch: int, steps: int, guidance: float, latents=None):
    from controlsprint.inference import Control, make_request

    return make_request(
        list(PROMPTS[:batch]),
        "",
        controls=[Control("canny", condition)],
        steps=steps,
        guidance=guidance,
        latents=latents,
    )


def ours_runner(folder: Path, condition: np.ndarray, steps: int, guidance: float):
    """(run, core): `core.generate` from a model folder loaded as `controlsprint generate` loads it."""
    from controlsprint.inference.loading import load_core

    core = load_core(str(folder))

    def run(batch: int, latents: np.ndarray) -> np.ndarray:
        return core.generate(ours_request(condition, batch, steps, guidance, latents))

    return run, core


def _diffusers_flax_model(cls, folder: Path):
    from diffusers.models.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax
    from safetensors.torch import load_file

    model = cls.from_config(cls.load_config(folder))
    model = model[0] if isinstance(model, tuple) else model
    weights = load_file(folder / "diffusion_pytorch_model.safetensors")
    return model, convert_pytorch_state_dict_to_flax(weights, model)


def flax_runner(pt: Path, condition: np.ndarray, steps: int, guidance: float):
    import jax
    import jax.numpy as jnp
    from diffusers import (
        FlaxAutoencoderKL,
        FlaxControlNetModel,
        FlaxDDIMScheduler,
        FlaxStableDiffusionControlNetPipeline,
        FlaxUNet2DConditionModel,
    )
    from flax.jax_utils import replicate
    from transformers import CLIPTokenizer, FlaxCLIPTextModel

    unet, unet_params = _diffusers_flax_model(FlaxUNet2DConditionModel, pt / "unet")
    vae, vae_params = _diffusers_flax_model(FlaxAutoencoderKL, pt / "vae")
    controlnet, controlnet_params = _diffusers_flax_model(FlaxControlNetModel, pt / "controlnets" / "canny")
    text_encoder = FlaxCLIPTextModel.from_pretrained(pt / "text_encoder", from_pt=True)
    scheduler, scheduler_state = FlaxDDIMScheduler.from_pretrained(pt / "scheduler")
    pipeline = FlaxStableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(pt / "tokenizer"),
        unet=unet,
        controlnet=controlnet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
    )
    params = replicate(
        {
            "unet": unet_params,
            "vae": vae_params,
            "controlnet": controlnet_params,
            "text_encoder": text_encoder.params,
            "scheduler": scheduler_state,
        }
    )
    image = condition.astype(np.float32).transpose(2, 0, 1)[None] / 255.0

    def run(batch: int, latents: np.ndarray) -> np.ndarray:
        ids = pipeline.prepare_text_inputs(list(PROMPTS[:batch]))
        negative = pipeline.prepare_text_inputs([""] * batch)
        out = pipeline(
            ids[None],  # a leading device axis: jit=True pmaps over the (one) device
            jnp.asarray(np.repeat(image, batch, axis=0)[None]),
            params,
            jax.random.split(jax.random.key(0), 1),
            num_inference_steps=steps,
            guidance_scale=guidance,
            latents=jnp.asarray(latents.transpose(0, 3, 1, 2)[None]),
            neg_prompt_ids=negative[None],
            jit=True,
        ).images
        return np.round(np.asarray(out)[0] * 255).astype(np.uint8)

    return run


def torch_runner(pt: Path, condition: np.ndarray, steps: int, guidance: float):
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    pipeline = StableDiffusionControlNetPipeline(
        vae=AutoencoderKL.from_pretrained(pt / "vae"),
        text_encoder=CLIPTextModel.from_pretrained(pt / "text_encoder"),
        tokenizer=CLIPTokenizer.from_pretrained(pt / "tokenizer"),
        unet=UNet2DConditionModel.from_pretrained(pt / "unet"),
        controlnet=ControlNetModel.from_pretrained(pt / "controlnets" / "canny"),
        scheduler=DDIMScheduler.from_pretrained(pt / "scheduler"),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.set_progress_bar_config(disable=True)
    image = torch.from_numpy(condition.astype(np.float32).transpose(2, 0, 1)[None] / 255.0)

    def run(batch: int, latents: np.ndarray) -> np.ndarray:
        out = pipeline(
            list(PROMPTS[:batch]),
            image,
            num_inference_steps=steps,
            guidance_scale=guidance,
            negative_prompt=[""] * batch,
            latents=torch.from_numpy(np.ascontiguousarray(latents.transpose(0, 3, 1, 2))),
            output_type="np",
        ).images
        return np.round(out * 255).astype(np.uint8)

    return run
