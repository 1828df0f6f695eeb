"""The train state and the one pure `train_step(state, batch, rng, learning_rate) -> (state, metrics)`.

`StepContext` holds everything static (modules, noise schedule, optimiser, settings); the trainer
binds it with `functools.partial` and jits the result once, with explicit shardings and the state
donated. Frozen components (VAE, text encoder, base UNet) ride in `state.frozen` and come back
untouched: gradients are taken with respect to `state.params` only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from controlsprint.schedulers import NoiseSchedule, min_snr_weights, sample_timesteps, training_target
from controlsprint.schedulers import add_noise as noisy_sample

VAE_KL_WEIGHT = 1e-6  # as Stable Diffusion's autoencoder: the KL term only keeps latents tame


@struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimiser steps taken
    params: Any  # the trained component
    opt_state: Any
    ema: Any  # EMA of params (None when off)
    frozen: Any  # {"vae":..., "text_encoder":..., "unet":...} as the mode needs; never updated


@dataclasses.dataclass(frozen=True, eq=False)
class StepContext:
    mode: str  # "controlnet" | "unet" | "vae" | "video"
    modules: dict  # Flax modules: "vae", "text_encoder", "unet", "controlnet" (as needed)
    schedule: NoiseSchedule
    scaling_factor: float
    optimizer: optax.GradientTransformation
    caption_dropout: float
    empty_ids: np.ndarray  # token ids of the empty prompt [T]
    grad_accum: int = 1
    ema_decay: float = 0.0
    hint_dropout: float = 0.0  # video: probability of a clip trained without its hint
    vae_decoder_only: bool = False  # vae: the encoder is frozen (its gradient is never formed)
    noise_offset: float = 0.0  # optim.noise_offset: per-sample, per-channel shift of the noise
    snr_gamma: float = 0.0  # optim.snr_gamma: Min-SNR loss weighting; 0 = plain MSE
    timestep_bias: str = "uniform"  # optim.timestep_bias: how training timesteps are drawn
    foreground_weight: float = 1.0  # optim.foreground_weight: loss weight of foreground latent pixels
    # unet mode, model.train_text_encoder: params are {"unet": ..., "text_encoder": ...}
    train_text_encoder: bool = False


def init_state(ctx: StepContext, params: Any, frozen: Any) -> TrainState:
    ema = jax.tree_util.tree_map(jnp.array, params) if ctx.ema_decay > 0 else None
    return TrainState(jnp.zeros((), jnp.int32), params, ctx.optimizer.init(params), ema, frozen)


# -- losses ---------------------------------------------------------------------------------------------


def _vae_loss(ctx: StepContext, params, frozen, batch, rng):
    vae = ctx.modules["vae"]
    pixels = batch["pixels"]
    mean, logvar = vae.apply({"params": params}, pixels, method="encode")
    if ctx.vae_decoder_only:  # no backward pass through the frozen encoder (optimizer masks its update)
        mean, logvar = jax.lax.stop_gradient((mean, logvar))
    z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
    recon = vae.apply({"params": params}, z, method="decode")
    kl = 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar)
    return jnp.mean(jnp.abs(recon - pixels)) + VAE_KL_WEIGHT * kl


def _latents(ctx: StepContext, frozen, pixels, rng) -> tuple[jax.Array, jax.Array]:
    """(sampled latents, mean latents) of pixels [..., H, W, 3], scaled; leading axes kept."""
    lead = pixels.shape[:-3]
    mean, logvar = ctx.modules["vae"].apply(
        {"params": frozen["vae"]}, pixels.reshape(-1, *pixels.shape[-3:]), method="encode"
    )
    latents, mean = _sample_posterior(ctx, mean, logvar, rng)
    unfold = lambda x: x.reshape(*lead, *x.shape[1:])  # noqa: E731
    return unfold(latents), unfold(mean)


def _sample_posterior(ctx: StepContext, mean, logvar, rng) -> tuple[jax.Array, jax.Array]:
    """(a sample, the mean) of the VAE's diagonal Gaussian posterior, scaled to the UNet's latents."""
    latents = mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape)
    return latents * ctx.scaling_factor, mean * ctx.scaling_factor


def _encoded_inputs(ctx: StepContext, frozen, text_params, batch, rng_latent, dropped):
    """(latents, mean latents, text states) of the batch: from its cached encodings when the trainer
    encoded the dataset once (training/encodings.py), otherwise through the encoders now. The captions
    go through `text_params` when the text encoder trains (never cached then), else the frozen one."""
    video = ctx.mode == "video"
    if "latent_mean" in batch:
        latents, mean = _sample_posterior(ctx, batch["latent_mean"], batch["latent_logvar"], rng_latent)
    else:
        latents, mean = _latents(ctx, frozen, batch["frames" if video else "pixels"], rng_latent)
    if "text" in batch:  # float32; the UNet and ControlNet cast it to their compute dtype
        return latents, mean, jnp.where(dropped[:, :, None], frozen["empty_text"][None], batch["text"])
    ids = jnp.where(dropped, jnp.asarray(ctx.empty_ids)[None], batch["ids"])
    weights = frozen["text_encoder"] if text_params is None else text_params
    return latents, mean, ctx.modules["text_encoder"].apply({"params": weights}, ids)[0]


def _denoising_loss(ctx: StepContext, params, frozen, batch, rng):
    """Noise-prediction (or v / x0, per the schedule) MSE of the UNet, steered by the ControlNet if any;
    in video mode, of the video UNet on whole clips, with frame 0's latent as the hint."""
    rng_latent, rng_noise, rng_t, rng_drop = jax.random.split(rng, 4)
    video = ctx.mode == "video"
    rows = (batch["text"] if "text" in batch else batch["ids"]).shape[0]
    dropped = jax.random.uniform(rng_drop, (rows, 1)) < ctx.caption_dropout
    text_params = None
    if ctx.train_text_encoder:
        params, text_params = params["unet"], params["text_encoder"]
    latents, mean, text = _encoded_inputs(ctx, frozen, text_params, batch, rng_latent, dropped)
    noise = _training_noise(ctx, rng_noise, latents.shape)
    t = sample_timesteps(ctx.schedule, rng_t, latents.shape[0], ctx.timestep_bias)
    noisy = noisy_sample(ctx.schedule, latents, noise, t)
    if ctx.mode == "controlnet":
        down, mid = ctx.modules["controlnet"].apply({"params": params}, noisy, t, text, batch["cond"])
        prediction = ctx.modules["unet"].apply({"params": frozen["unet"]}, noisy, t, text, down, mid)
    elif video:
        # The hint is the clean first frame (its mean latent, as inference encodes the hint image);
        # an all-zero hint is how the video UNet reads "no hint", so dropping one is a multiply.
        keep = jax.random.uniform(jax.random.fold_in(rng_drop, 1), (rows, 1, 1, 1)) >= ctx.hint_dropout
        hint = mean[:, 0] * keep
        tree = {"spatial": frozen["unet"], **params}
        prediction = ctx.modules["video"].apply({"params": tree}, noisy, t, text, hint_latent=hint)
    else:
        prediction = ctx.modules["unet"].apply({"params": params}, noisy, t, text)
    target = training_target(ctx.schedule, latents, noise, t)
    squared = jnp.square(prediction - target)
    if ctx.snr_gamma == 0 and ctx.foreground_weight == 1:  # plain MSE, reduced as before the options
        return jnp.mean(squared)
    if ctx.foreground_weight == 1:
        per_sample = squared.reshape(squared.shape[0], -1).mean(axis=1)
    else:  # a weighted mean per sample, so its scale stays that of plain MSE
        weights = foreground_weights(batch["foreground"], squared.shape, ctx.foreground_weight)
        per_sample = jnp.mean(weights * squared, axis=(1, 2, 3)) / jnp.mean(weights, axis=(1, 2, 3))
    if ctx.snr_gamma == 0:
        return jnp.mean(per_sample)
    return jnp.mean(per_sample * min_snr_weights(ctx.schedule, t, ctx.snr_gamma))


def foreground_weights(foreground: jax.Array, latent_shape, weight: float) -> jax.Array:
    """[B, h, w, 1] loss weights of latent pixels: 1 + (weight - 1) x the share of the pixel's image
    patch that is foreground (foreground [B, H, W] in {0, 1}, H and W multiples of h and w)."""
    rows, height, width = foreground.shape
    h, w = latent_shape[1], latent_shape[2]
    share = foreground.reshape(rows, h, height // h, w, width // w).mean(axis=(2, 4))
    return (1.0 + (weight - 1.0) * share)[..., None]


def _training_noise(ctx: StepContext, rng, shape) -> jax.Array:
    """N(0, 1) noise, plus `noise_offset` x N(0, 1) shared by all pixels (and frames) of a sample's channel."""
    if ctx.noise_offset == 0:
        return jax.random.normal(rng, shape)
    rng_noise, rng_offset = jax.random.split(rng)
    offset_shape = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)
    return jax.random.normal(rng_noise, shape) + ctx.noise_offset * jax.random.normal(
        rng_offset, offset_shape
    )


def loss_fn(ctx: StepContext, params, frozen, batch, rng) -> jax.Array:
    return (_vae_loss if ctx.mode == "vae" else _denoising_loss)(ctx, params, frozen, batch, rng)


# -- the step -------------------------------------------------------------------------------------------


def _gradients(ctx: StepContext, params, frozen, batch, rng):
    """Mean loss and gradient over the batch, in `grad_accum` sequential micro-batches."""
    grad_fn = jax.value_and_grad(lambda p, b, r: loss_fn(ctx, p, frozen, b, r))
    if ctx.grad_accum == 1:
        return grad_fn(params, batch, rng)
    # Micro-batch i takes rows i, i+k, i+2k...: every device's shard holds rows of every micro-batch,
    # so splitting needs no communication and does not depend on the device count.
    micro = jax.tree_util.tree_map(
        lambda x: x.reshape(-1, ctx.grad_accum, *x.shape[1:]).swapaxes(0, 1), batch
    )

    def accumulate(carry, inputs):
        loss_sum, grad_sum = carry
        micro_batch, index = inputs
        loss, grads = grad_fn(params, micro_batch, jax.random.fold_in(rng, index))
        return (loss_sum + loss, jax.tree_util.tree_map(jnp.add, grad_sum, grads)), None

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    (loss, grads), _ = jax.lax.scan(accumulate, (0.0, zeros), (micro, jnp.arange(ctx.grad_accum)))
    scale = 1.0 / ctx.grad_accum
    return loss * scale, jax.tree_util.tree_map(lambda g: g * scale, grads)


def ema_decay_at(decay: float, step):
    """EMA decay warmed up as (1 + step) / (10 + step), capped at `decay`: the EMA starts as a copy of
    the initial weights, and a constant 0.999 would still hold 0.999**900 = 41 % of that random init
    after 900 steps (short runs exported noise); the warmup forgets it within the first few hundred."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def train_step(
    ctx: StepContext, state: TrainState, batch: dict, rng: jax.Array, learning_rate: jax.Array
) -> tuple[TrainState, dict]:
    """One optimiser step at `learning_rate` (a float32 scalar: the schedule lives outside the program,
    optim.py). A non-finite loss leaves the state unchanged (metrics say so)."""
    loss, grads = _gradients(ctx, state.params, state.frozen, batch, rng)
    direction, opt_state = ctx.optimizer.update(grads, state.opt_state, state.params)
    step_size = -jnp.asarray(learning_rate, jnp.float32)
    updates = jax.tree_util.tree_map(lambda d: step_size.astype(d.dtype) * d, direction)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema
    if ema is not None:
        decay = ema_decay_at(ctx.ema_decay, state.step)
        ema = jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    finite = jnp.isfinite(loss)
    # Keep the last good state when the loss blows up, so the trainer can stop with it intact.
    keep_good = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
    step, params, opt_state, ema = keep_good(
        (state.step + 1, params, opt_state, ema), (state.step, state.params, state.opt_state, state.ema)
    )
    new = TrainState(step, params, opt_state, ema, state.frozen)
    metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "finite": finite}
    return new, metrics
