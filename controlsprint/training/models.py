"""What a run starts from: the base pipeline (loaded or fresh) and the initial trainable parameters."""

from __future__ import annotations

import dataclasses

import numpy as np

from controlsprint.errors import UserError
from controlsprint.models import configs as C
from controlsprint.models.components import init_params
from controlsprint.models.convert import flatten, unflatten
from controlsprint.models.io import Component
from controlsprint.models.pipeline import Pipeline, load_pipeline
from controlsprint.schedulers import SD15_SCHEDULER_CONFIG, ZERO_SNR_V_SCHEDULER_CONFIG
from controlsprint.training.config import TrainConfig

# (vae, unet, text encoder, conditioning-embedding channels) per fresh architecture
ARCHITECTURES = {
    "tiny": (C.TINY_VAE, C.TINY_UNET, C.TINY_TEXT, C.TINY_CONTROLNET.conditioning_embedding_out_channels),
    "embedded": (C.EMBEDDED_VAE, C.EMBEDDED_UNET, C.EMBEDDED_TEXT, C.EMBEDDED_CONDITIONING_CHANNELS),
    "embedded-4x": (
        C.EMBEDDED_4X_VAE,
        C.EMBEDDED_4X_UNET,
        C.EMBEDDED_TEXT,
        C.EMBEDDED_4X_CONDITIONING_CHANNELS,
    ),
    "sd15": (C.SD15_VAE, C.SD15_UNET, C.SD15_TEXT, C.SD15_CONTROLNET.conditioning_embedding_out_channels),
}


VAE_ENCODER_PARTS = ("encoder", "quant_conv")  # what model.vae_part="decoder" keeps frozen


@dataclasses.dataclass(frozen=True)
class StartingPoint:
    pipeline: Pipeline  # frozen components + tokenizer (+ the trained one's starting weights)
    trainable: Component  # what the optimiser updates


def fresh_pipeline(cfg: TrainConfig, captions: list[str]) -> Pipeline:
    from controlsprint.models.vocab import build_word_tokenizer

    vae_cfg, unet_cfg, text_cfg, _ = ARCHITECTURES[cfg.model.architecture]
    if cfg.model.architecture == "sd15" or not cfg.model.tokenizer_from_dataset:
        raise UserError("a fresh pipeline needs model.tokenizer_from_dataset=true (or give model.base)")
    tokenizer = build_word_tokenizer(captions, max_length=text_cfg.max_position_embeddings)
    text_cfg = dataclasses.replace(
        text_cfg,
        vocab_size=len(tokenizer.vocab),
        bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id,
        pad_token_id=tokenizer.pad_id,
    )
    seed = cfg.model.seed
    return Pipeline(
        unet=Component("unet", unet_cfg, init_params(unet_cfg, seed)),
        vae=Component("vae", vae_cfg, init_params(vae_cfg, seed + 1)),
        text_encoder=Component("text_encoder", text_cfg, init_params(text_cfg, seed + 2)),
        tokenizer=tokenizer,
        scheduler_config=dict(SD15_SCHEDULER_CONFIG),
        meta={"architecture": cfg.model.architecture},
    )


def controlnet_from_unet(unet: Component, conditioning_channels: tuple[int, ...], seed: int, copy: bool):
    """A ControlNet mirroring `unet`'s encoder; with `copy`, its encoder weights start as the UNet's."""
    cn_cfg = C.controlnet_config_from_unet(
        unet.config, conditioning_embedding_out_channels=conditioning_channels
    )
    params = flatten(init_params(cn_cfg, seed))
    if copy:
        source = flatten(unet.params)
        for path, value in params.items():
            twin = source.get(path)
            # conv_in of an inpainting UNet takes 9 channels; the ControlNet's takes 4: keep it fresh.
            if twin is not None and tuple(np.shape(twin)) == tuple(np.shape(value)):
                params[path] = np.asarray(twin)
    return Component("controlnet", cn_cfg, unflatten(params))


def fresh_temporal(cfg: TrainConfig, pipeline: Pipeline) -> Component:
    """Temporal layers for `pipeline`'s UNet, initialised so that the video UNet equals it frame by frame."""
    import jax

    from controlsprint.models.video_configs import VideoUNetConfig
    from controlsprint.models.video_io import temporal_params
    from controlsprint.models.video_unet import inflate

    config = VideoUNetConfig(
        unet=pipeline.unet.config,
        temporal_attention_heads=cfg.model.temporal_heads,
        temporal_kernel_size=cfg.model.temporal_kernel,
        hint_channels=pipeline.vae.config.latent_channels,
    )
    params = inflate(pipeline.unet.params, config, jax.random.key(cfg.model.seed + 4))
    return Component("temporal", config, jax.device_get(temporal_params(params)))


def starting_point(cfg: TrainConfig, captions: list[str]) -> StartingPoint:
    """The pipeline to train against and the component to train, per `cfg.model`."""
    pipeline = (
        load_pipeline(cfg.model.base, with_controlnets=False)
        if cfg.model.base
        else fresh_pipeline(cfg, captions)
    )
    mode = cfg.model.mode
    if mode == "vae":
        return StartingPoint(pipeline, pipeline.vae)
    if mode == "unet":
        schedules = {"sd15": SD15_SCHEDULER_CONFIG, "zero-snr-v": ZERO_SNR_V_SCHEDULER_CONFIG}
        if cfg.model.schedule in schedules:
            pipeline = dataclasses.replace(pipeline, scheduler_config=dict(schedules[cfg.model.schedule]))
        return StartingPoint(pipeline, pipeline.unet)
    if mode == "video":
        return StartingPoint(pipeline, pipeline.temporal or fresh_temporal(cfg, pipeline))
    # Our own pipelines record their architecture; anything else (a real SD folder) gets SD's embedding.
    architecture = pipeline.meta.get("architecture", "sd15")
    channels = ARCHITECTURES.get(architecture, ARCHITECTURES["sd15"])[3]
    vae_levels = len(pipeline.vae.config.block_out_channels)
    if len(channels) != vae_levels:  # the condition embedding must downsample exactly as much as the VAE
        raise UserError(
            f"model.base: a {vae_levels}-level VAE needs a {vae_levels}-level conditioning embedding "
            f"(architecture '{architecture}' has {len(channels)})"
        )
    controlnet = controlnet_from_unet(
        pipeline.unet, channels, cfg.model.seed + 3, cfg.model.controlnet_init == "unet"
    )
    return StartingPoint(pipeline, controlnet)


def initial_params(cfg: TrainConfig, start: StartingPoint):
    """The tree the optimiser updates: the trainable component's weights, or, when the text encoder
    trains with the UNet, {"unet": ..., "text_encoder": ...} (step.py splits it the same way)."""
    if cfg.model.train_text_encoder:
        return {"unet": start.trainable.params, "text_encoder": start.pipeline.text_encoder.params}
    return start.trainable.params


def step_context(cfg: TrainConfig, start: StartingPoint) -> tuple:
    """The train step's modules and settings for `start` (`StepContext`), and the frozen parameters it
    reads: the trainer's and the training benchmark's one way to set a step up."""
    import jax
    import jax.numpy as jnp

    from controlsprint.schedulers import from_diffusers_config
    from controlsprint.training.optim import make_optimizer
    from controlsprint.training.step import StepContext

    mode, pipeline = cfg.model.mode, start.pipeline
    dtype = jnp.bfloat16 if cfg.run.dtype == "bfloat16" else jnp.float32
    modules = {
        "vae": pipeline.vae.module(dtype=dtype),
        "text_encoder": pipeline.text_encoder.module(dtype=dtype),
        "unet": pipeline.unet.module(dtype=dtype, remat=cfg.run.remat),
    }
    modules[mode] = start.trainable.module(dtype=dtype, **({} if mode == "vae" else {"remat": cfg.run.remat}))
    image_parts = {"vae": pipeline.vae.params, "text_encoder": pipeline.text_encoder.params}
    frozen = {
        "vae": {},
        "unet": {"vae": pipeline.vae.params} if cfg.model.train_text_encoder else image_parts,
        "controlnet": {**image_parts, "unet": pipeline.unet.params},
        "video": {**image_parts, "unet": pipeline.unet.params},  # the video UNet's spatial part
    }[mode]
    decoder_only = mode == "vae" and cfg.model.vae_part == "decoder"
    flat_optimizer = jax.default_backend() == "cpu" and cfg.mesh.fsdp == 1  # see make_optimizer
    frozen_parts = VAE_ENCODER_PARTS if decoder_only else ()
    ctx = StepContext(
        mode=mode,
        modules=modules,
        schedule=from_diffusers_config(pipeline.scheduler_config),
        scaling_factor=float(pipeline.vae.config.scaling_factor),
        optimizer=make_optimizer(cfg.optim, frozen_parts, flat=flat_optimizer),
        caption_dropout=cfg.data.caption_dropout,
        empty_ids=pipeline.tokenizer([""])[0],
        grad_accum=cfg.optim.grad_accum,
        ema_decay=cfg.optim.ema_decay,
        hint_dropout=cfg.data.hint_dropout,
        vae_decoder_only=decoder_only,
        noise_offset=cfg.optim.noise_offset,
        foreground_weight=cfg.optim.foreground_weight,
        snr_gamma=cfg.optim.snr_gamma,
        timestep_bias=cfg.optim.timestep_bias,
        train_text_encoder=cfg.model.train_text_encoder,
    )
    return ctx, frozen
