"""The training config: one frozen dataclass tree, every key commented, overridable with --set.

Config files in `train/configs/` build one of these in `get_config()`. Group by group:
  model    what is trained and what it starts from
  data     the dataset (parquet format of `controlsprint synth/prepare`) and how it is read
  optim    optimiser, schedule, clipping, accumulation, EMA
  mesh     the device mesh: axes `data` (replicas) and `fsdp` (parameter sharding)
  run      steps, batch, precision, checkpoints, logging, validation, export
"""

from __future__ import annotations

import dataclasses
from typing import Literal


@dataclasses.dataclass(frozen=True)
class ModelSection:
    # What the run trains: a ControlNet (base frozen), the base UNet (text-to-image; VAE and text
    # encoder frozen), the VAE (autoencoder on the images), or the video UNet's temporal layers and
    # hint input (every image part frozen; needs a clip dataset, synth --kinds motion).
    mode: Literal["controlnet", "unet", "vae", "video"] = "controlnet"
    # A diffusers-layout pipeline folder to start from (a real SD1.5 folder, or a previous run's
    # export). None: build a fresh pipeline of `architecture`.
    base: str | None = None
    # Architecture for fresh components: "tiny" (tests), "embedded" (the shipped default), "embedded-4x"
    # (a 4x VAE with 32x32 latents and its UNet: measured, not shipped, docs/embedded-model.md), "sd15".
    architecture: Literal["tiny", "embedded", "embedded-4x", "sd15"] = "tiny"
    # The ControlNet starts as a copy of the UNet's encoder (the ControlNet paper) or from scratch.
    controlnet_init: Literal["unet", "scratch"] = "unet"
    # Name of the condition: the dataset column to read and the ControlNet's name in exports.
    condition: str = "canny"
    # Fresh tokenizer: a word-level vocabulary built from the dataset's captions (only without `base`).
    tokenizer_from_dataset: bool = True
    seed: int = 0  # seed of fresh parameter initialisation
    # video: heads of the attention over frames (must divide every UNet block width) and the temporal
    # conv's kernel; used when the base has no temporal layers yet (otherwise training continues those).
    temporal_heads: int = 8
    temporal_kernel: int = 3
    # vae: "whole" trains encoder and decoder; "decoder" fine-tunes only the decoder of `base`'s VAE
    # (encoder frozen), so the latent space a UNet was trained on stays valid (as Stable Diffusion's
    # ft-MSE VAE: sharper pictures from the same latents).
    vae_part: Literal["whole", "decoder"] = "whole"
    # unet: train the text encoder together with the UNet (one optimiser, one EMA), starting from the
    # base's (or a fresh) encoder. A small fresh CLIP frozen at its random init carries the words;
    # trained, it can shape them for the UNet (the embedded model's backgrounds follow the caption with
    # it and the zero-SNR v schedule). Later ControlNet runs use the exported encoder frozen, as SD's
    # ControlNets use CLIP.
    train_text_encoder: bool = False
    # unet: the noise schedule the UNet learns, written to the export's scheduler_config.json. "base"
    # keeps the base's (SD1.5's for a fresh pipeline); "sd15" is SD1.5's epsilon schedule; "zero-snr-v"
    # rescales it to zero terminal SNR with v-prediction and trailing timesteps (Lin et al. 2023), so
    # sampling starts from pure noise and the prompt, not the noise, sets an image's overall colour.
    schedule: Literal["base", "sd15", "zero-snr-v"] = "base"


@dataclasses.dataclass(frozen=True)
class DataSection:
    path: str = "data/synth"  # dataset directory (manifest.json + data/*.parquet)
    resolution: int = 128  # images are resized (short side) and centre-cropped to this square
    # Train on random crop x crop windows of those squares (0 = whole images). Convolutional models
    # (the VAE) learn the same local features from crops at a fraction of the compute.
    crop: int = 0
    seed: int = 0  # data order: a fixed permutation per (seed, epoch), so a resumed run sees the same batches
    caption_dropout: float = 0.1  # probability of training on the empty prompt (enables CFG)
    hint_dropout: float = 0.1  # video: probability of training a clip without its hint image
    prefetch: int = 2  # batches decoded ahead on a background thread
    # ControlNet and UNet modes: run the frozen VAE encoder and text encoder over the dataset once,
    # before step 1, and train on their cached outputs (a fresh latent sample every step; see
    # training/encodings.py). Off, with data.crop, for runs of at most one epoch, or past 4 GiB of
    # cache: encoded every step.
    cache_encodings: bool = True
    # Keep those encodings on disk here too ("" = in memory only): a later run on the same dataset with
    # the same frozen encoders reads them instead of encoding again (training/encodings_store.py).
    encodings_dir: str = ""
    # optim.foreground_weight reads its foreground from this condition column: pixels that are not
    # black (the synth segment maps draw the background black, every shape and hand in a class colour).
    foreground_condition: str = "segment"


@dataclasses.dataclass(frozen=True)
class OptimSection:
    learning_rate: float = 1e-4
    schedule: Literal["constant", "cosine"] = "constant"  # after warmup
    warmup_steps: int = 0  # linear warmup from 0
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    grad_clip: float = 1.0  # global-norm clipping; 0 turns it off
    grad_accum: int = 1  # micro-batches per step (the batch is split, gradients summed, one update)
    ema_decay: float = 0.0  # exponential moving average of the trained weights; 0 = off
    # Denoising loss (UNet, ControlNet, video modes), as diffusers' training scripts' flags of the same
    # names. noise_offset: add offset * N(0, 1) per sample and channel to the noise, so the model can
    # move an image's mean colour away from what the initial noise implies (at 16x16 latents the
    # noise's own per-channel mean, std 1/16, is as large as the signal left at t=999). snr_gamma:
    # Min-SNR weighting (Hang et al. 2023), min(SNR, gamma) / SNR for epsilon targets; 0 = off.
    noise_offset: float = 0.0
    snr_gamma: float = 0.0
    # How training timesteps are drawn: "uniform", or "cubic", t = (1 - u^3) T as T2I-Adapter trains
    # its adapters, most samples at high noise where a picture's layout is decided (for ControlNets).
    timestep_bias: Literal["uniform", "cubic"] = "uniform"
    # UNet and ControlNet modes: weight of the denoising loss on latent pixels covered by foreground
    # (data.foreground_condition), relative to background at 1, as kohya's masked loss. The synth shapes and
    # hands are 8-14 % of the pixels, so with plain MSE (1.0, off) a short run learns the
    # background long before the shapes and their colours.
    foreground_weight: float = 1.0


@dataclasses.dataclass(frozen=True)
class MeshSection:
    data: int = -1  # replicas; -1 = all devices / fsdp
    fsdp: int = 1  # shard parameters and optimiser state over this many devices (ZeRO-3 style)


@dataclasses.dataclass(frozen=True)
class RunSection:
    output_dir: str = "runs/tiny"  # checkpoints, logs, validation images, export
    steps: int = 100  # optimiser steps in total
    batch_size: int = 8  # global batch (all processes together); divisible by the device count
    seed: int = 0  # noise, timesteps and caption dropout: fold_in(seed, step), so resume is exact
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype; parameters stay float32
    remat: bool = False  # rematerialise UNet/ControlNet blocks in the backward pass (memory for compute)
    log_every: int = 10  # scalars to TensorBoard and the progress bar
    checkpoint_every: int = 50  # orbax checkpoint interval (and always at the end)
    keep_checkpoints: int = 2  # how many to keep
    async_checkpoints: bool = True  # write checkpoints in the background while training continues
    validate_every: int = 0  # validation grid + controllability metric; 0 = only at the end
    validation_samples: int = 4  # how many dataset rows (conditions, prompts) to validate on
    validation_steps: int = 20  # sampler steps for validation images
    export: bool = True  # write Flax and PyTorch-diffusers folders at the end


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str = "tiny"
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    optim: OptimSection = dataclasses.field(default_factory=OptimSection)
    mesh: MeshSection = dataclasses.field(default_factory=MeshSection)
    run: RunSection = dataclasses.field(default_factory=RunSection)


def check_config(cfg: TrainConfig) -> None:
    """Range checks the dataclass types cannot express; one UserError naming the key."""
    from controlsprint.errors import UserError

    checks = [
        ("run.steps", cfg.run.steps >= 1, ">= 1"),
        ("run.batch_size", cfg.run.batch_size >= 1, ">= 1"),
        ("run.log_every", cfg.run.log_every >= 1, ">= 1"),
        ("run.checkpoint_every", cfg.run.checkpoint_every >= 1, ">= 1"),
        ("run.keep_checkpoints", cfg.run.keep_checkpoints >= 1, ">= 1"),
        ("run.validate_every", cfg.run.validate_every >= 0, ">= 0"),
        ("run.validation_samples", cfg.run.validation_samples >= 1, ">= 1"),
        ("run.validation_steps", cfg.run.validation_steps >= 1, ">= 1"),
        ("data.resolution", cfg.data.resolution >= 8 and cfg.data.resolution % 8 == 0, "a multiple of 8"),
        ("data.caption_dropout", 0.0 <= cfg.data.caption_dropout <= 1.0, "in [0, 1]"),
        ("data.hint_dropout", 0.0 <= cfg.data.hint_dropout <= 1.0, "in [0, 1]"),
        ("data.crop", cfg.model.mode != "video" or cfg.data.crop == 0, "0 in video mode (clips train whole)"),
        (
            "data.crop",
            cfg.data.crop == 0 or (8 <= cfg.data.crop <= cfg.data.resolution and cfg.data.crop % 8 == 0),
            "0 or a multiple of 8 up to data.resolution",
        ),
        ("optim.learning_rate", cfg.optim.learning_rate > 0, "> 0"),
        ("optim.warmup_steps", cfg.optim.warmup_steps >= 0, ">= 0"),
        ("optim.grad_clip", cfg.optim.grad_clip >= 0, ">= 0"),
        ("optim.grad_accum", cfg.optim.grad_accum >= 1, ">= 1"),
        ("optim.ema_decay", 0.0 <= cfg.optim.ema_decay < 1.0, "in [0, 1)"),
        ("optim.noise_offset", cfg.optim.noise_offset >= 0, ">= 0"),
        ("optim.snr_gamma", cfg.optim.snr_gamma >= 0, ">= 0 (0 = off)"),
        ("optim.foreground_weight", cfg.optim.foreground_weight > 0, "> 0 (1 = off)"),
        (
            "optim.foreground_weight",
            cfg.optim.foreground_weight == 1.0 or cfg.model.mode in ("unet", "controlnet"),
            "1 unless model.mode is unet or controlnet",
        ),
        (
            "model.vae_part",
            cfg.model.vae_part == "whole" or (cfg.model.mode == "vae" and cfg.model.base is not None),
            '"whole" unless model.mode=vae with a model.base (a fresh encoder cannot stay frozen)',
        ),
        (
            "model.train_text_encoder",
            not cfg.model.train_text_encoder or cfg.model.mode == "unet",
            "false unless model.mode=unet",
        ),
        (
            "model.schedule",
            cfg.model.schedule == "base" or cfg.model.mode == "unet",
            '"base" unless model.mode=unet',
        ),
        ("mesh.fsdp", cfg.mesh.fsdp >= 1, ">= 1"),
        ("mesh.data", cfg.mesh.data == -1 or cfg.mesh.data >= 1, "-1 or >= 1"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise UserError(f"config {key}: must be {rule}")
    if cfg.run.batch_size % cfg.optim.grad_accum:
        raise UserError(
            f"config run.batch_size={cfg.run.batch_size} must divide by optim.grad_accum={cfg.optim.grad_accum}"
        )
