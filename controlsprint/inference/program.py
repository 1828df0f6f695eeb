"""The one sampling program: token ids and noise in, uint8 pixels out, as a single jitted function.

Text encoding, the VAE encode of an init image, the whole denoising loop (`lax.fori_loop`, so the
loop body is compiled once whatever the step count), every ControlNet, classifier-free guidance
(unconditional and conditional halves batched into one forward), inpaint blending and the VAE
decode all live in one XLA program. `InferenceCore` compiles it once per (shapes, options) and the
persistent compilation cache keeps it across processes. Nothing here is called step by step from
Python, which is what makes small models fast: there is no per-step dispatch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from controlsprint.schedulers import Scheduler


@dataclasses.dataclass(frozen=True)
class Options:
    """Everything that changes the program's structure (so it is part of the compile cache key)."""

    mode: str  # "txt2img" | "img2img" | "inpaint"
    cfg: bool  # classifier-free guidance on (guidance > 1)
    controlnets: tuple[str, ...]  # which ControlNets run, in order
    guess_mode: bool = False
    inpaint_unet: bool = False  # the UNet takes 9 channels: latents + mask + masked-image latents
    frames: int = 0  # > 0: a clip of this many frames from the video UNet (latents [B, F, h, w, C])
    hint: bool = False  # video: the hint image's latent goes into every frame (the video UNet's hint input)
    lock_first_frame: bool = False  # video: frame 0 is held on the hint's noised latent, as inpainting does


@dataclasses.dataclass(frozen=True, eq=False)
class Models:
    """The Flax modules (parameters travel separately, as jit arguments)."""

    unet: Any
    vae: Any
    text_encoder: Any
    controlnets: Mapping[str, Any]
    scaling_factor: float


def _encode_image(models: Models, vae_params, pixels: jax.Array) -> jax.Array:
    mean, _ = models.vae.apply({"params": vae_params}, pixels, method="encode")
    return mean * models.scaling_factor


def _control_keep(sched: Scheduler, i, start_index, starts, ends) -> jax.Array:
    """1 where each ControlNet acts at loop step i, else 0 (fractions of the steps actually run)."""
    total = (sched.num_inference_steps - start_index).astype(jnp.float32)
    run = (i - start_index).astype(jnp.float32)
    return 1.0 - jnp.logical_or(run / total < starts, (run + 1.0) / total > ends).astype(jnp.float32)


def sample(
    models: Models,
    options: Options,
    progress_hook: Callable[[Any], None] | None,
    params: Mapping[str, Any],
    sched: Scheduler,
    inputs: Mapping[str, Any],
) -> jax.Array:
    """Run the whole generation; returns uint8 pixels [B, H, W, 3].

    inputs: ids/negative_ids [B, T] int32; noise [B, h, w, 4]; conditions: tuple of [1, H, W, 3] in
    [0, 1]; scales/starts/ends [k]; guidance []; start_index [] int32; init [1, H, W, 3] in [-1, 1] and
    mask [1, H, W, 1] in {0, 1} (img2img / inpaint only).
    Video (options.frames > 0): noise [B, F, h, w, 4], hint [1, H, W, 3] in [-1, 1]; `models.unet` is the
    video UNet and `params["unet"]` its tree; returns [B, F, H, W, 3].
    """
    encode_text = lambda ids: models.text_encoder.apply({"params": params["text_encoder"]}, ids)[0]  # noqa: E731
    text = encode_text(inputs["ids"])
    context = jnp.concatenate([encode_text(inputs["negative_ids"]), text]) if options.cfg else text
    noise = inputs["noise"]
    batch, lat_h, lat_w, channels = noise.shape[0], *noise.shape[-3:]
    start_index = inputs["start_index"]
    double = (lambda x: jnp.concatenate([x, x])) if options.cfg else (lambda x: x)
    unet_extra = {}
    if options.hint or options.lock_first_frame:
        hint_latent = jnp.broadcast_to(
            _encode_image(models, params["vae"], inputs["hint"]), (batch, lat_h, lat_w, channels)
        )
        if options.hint:  # both CFG halves see the hint: guidance steers by the text alone
            unet_extra["hint_latent"] = double(hint_latent)

    if options.mode == "txt2img":
        latents = noise * sched.init_noise_sigma
        if options.lock_first_frame:
            latents = latents.at[:, 0].set(sched.add_noise(hint_latent, noise[:, 0], 0))
    else:
        init_latent = _encode_image(models, params["vae"], inputs["init"])
        # [1, h, w, C] -> every image of the batch (and every frame of a clip)
        image_latents = jnp.broadcast_to(init_latent[:, None] if options.frames else init_latent, noise.shape)
        latents = sched.add_noise(image_latents, noise, start_index)
    if options.mode == "inpaint":
        mask_px = inputs["mask"]
        # A latent is repainted if any pixel of its 8x8 patch is: the kept region stays exactly intact.
        window = (1, mask_px.shape[1] // lat_h, mask_px.shape[2] // lat_w, 1)
        mask = jax.lax.reduce_window(mask_px, 0.0, jax.lax.max, window, window, "VALID")
        mask = jnp.broadcast_to(mask, (batch, lat_h, lat_w, 1))
        if options.inpaint_unet:
            masked = _encode_image(models, params["vae"], inputs["init"] * (1.0 - mask_px))
            extra_channels = jnp.concatenate(
                [mask, jnp.broadcast_to(masked, (batch, *masked.shape[1:]))], axis=-1
            )

    # Each condition image goes through its ControlNet's conditioning stem once, here: the features
    # depend on neither the step nor the CFG half, and broadcast over the batch inside the ControlNet.
    embeddings = [
        models.controlnets[name].apply(
            {"params": params["controlnets"][name]}, condition, method="embed_condition"
        )
        for name, condition in zip(options.controlnets, inputs["conditions"], strict=True)
    ]

    def controlnet_residuals(i, model_input, t):
        keep = _control_keep(sched, i, start_index, inputs["starts"], inputs["ends"]) * inputs["scales"]
        total = None
        for k, name in enumerate(options.controlnets):
            apply = functools.partial(
                models.controlnets[name].apply,
                {"params": params["controlnets"][name]},
                conditioning_scale=keep[k],
                condition_embedding=embeddings[k],
            )
            if options.guess_mode and options.cfg:
                # Guess mode: the ControlNet sees only the conditional half; the unconditional half gets none.
                down, mid = apply(model_input, t, text, guess_mode=True)
                down = [jnp.concatenate([jnp.zeros_like(d), d]) for d in down]
                mid = jnp.concatenate([jnp.zeros_like(mid), mid])
            else:
                down, mid = apply(double(model_input), t, context, guess_mode=options.guess_mode)
            total = (
                (down, mid)
                if total is None
                else ([a + b for a, b in zip(total[0], down, strict=True)], total[1] + mid)
            )
        return total

    def body(i, carry):
        state, latents = carry
        model_input = sched.scale_model_input(state, latents, i)
        t = sched.timesteps[i]
        residuals = controlnet_residuals(i, model_input, t) if options.controlnets else (None, None)
        unet_input = model_input
        if options.inpaint_unet:
            unet_input = jnp.concatenate([model_input, extra_channels], axis=-1)
        prediction = models.unet.apply(
            {"params": params["unet"]}, double(unet_input), t, context, *residuals, **unet_extra
        )
        if options.cfg:
            uncond, cond = jnp.split(prediction, 2)
            prediction = uncond + inputs["guidance"] * (cond - uncond)
        state, latents = sched.step(state, prediction, i, latents)
        if options.mode == "inpaint" and not options.inpaint_unet:
            # Keep the known region on the sampler's noise schedule; index n returns it unnoised.
            latents = mask * latents + (1.0 - mask) * sched.add_noise(image_latents, noise, i + 1)
        if options.lock_first_frame:  # the same blending, with frame 0 as the known region
            latents = latents.at[:, 0].set(sched.add_noise(hint_latent, noise[:, 0], i + 1))
        if progress_hook is not None:
            jax.debug.callback(progress_hook, i)
        return state, latents

    state = sched.init_state(latents.shape)
    _, latents = jax.lax.fori_loop(start_index, sched.num_inference_steps, body, (state, latents))
    pixels = models.vae.apply(
        {"params": params["vae"]},
        latents.reshape(-1, lat_h, lat_w, channels)
        / models.scaling_factor,  # a clip's frames fold into the batch
        method="decode",
    )
    pixels = pixels.reshape(*latents.shape[:-3], *pixels.shape[1:])
    if options.mode == "inpaint":
        pixels = inputs["mask"] * pixels + (1.0 - inputs["mask"]) * inputs["init"]
    return jnp.round(jnp.clip(pixels / 2.0 + 0.5, 0.0, 1.0) * 255.0).astype(jnp.uint8)
