"""The two reference training steps bench/train.py compares ours with, on the same `Setup`.

  FlaxReferenceStep   the step of diffusers' examples/controlnet/train_controlnet_flax.py, written out
                      on diffusers 0.39's Flax modules and transformers' FlaxCLIPTextModel
  TorchReferenceStep  the step of examples/controlnet/train_controlnet.py on diffusers' torch modules
                      and transformers' CLIPTextModel

Each has `run(n)`: n optimiser steps, returning once the last is finished, and
`loss_and_grad_norm(draws)` on explicit random draws (as `OursStep.draws` gives them), for the check
that all three do the same work.
"""

from __future__ import annotations

import numpy as np
from _train_systems import Setup, flops_of, ready


def _references_optimizer(cfg):
    """AdamW with the run's hyper-parameters (constant learning rate, as the tiny config)."""
    return {
        "lr": cfg.optim.learning_rate,
        "b1": cfg.optim.b1,
        "b2": cfg.optim.b2,
        "eps": cfg.optim.eps,
        "weight_decay": cfg.optim.weight_decay,
        "grad_clip": cfg.optim.grad_clip,
    }


# -- reference: diffusers-0.39-style Flax ----------------------------------------------------------


class FlaxReferenceStep:
    """diffusers' Flax ControlNet training example, reduced to its step: frozen VAE, text encoder and
    UNet passed in as arguments, the ControlNet in a `flax.training.train_state.TrainState`, optax
    clip + AdamW, latents NCHW as diffusers' Flax UNet takes them."""

    def __init__(self, setup: Setup):
        import jax
        import jax.numpy as jnp
        import optax
        from _inference_systems import _diffusers_flax_model
        from diffusers import (
            FlaxAutoencoderKL,
            FlaxControlNetModel,
            FlaxDDPMScheduler,
            FlaxUNet2DConditionModel,
        )
        from flax.training import train_state
        from transformers import FlaxCLIPTextModel

        folder, cfg = setup.folder, setup.cfg
        unet, unet_params = _diffusers_flax_model(FlaxUNet2DConditionModel, folder / "unet")
        vae, vae_params = _diffusers_flax_model(FlaxAutoencoderKL, folder / "vae")
        controlnet, controlnet_params = _diffusers_flax_model(
            FlaxControlNetModel, folder / "controlnets" / cfg.model.condition
        )
        text_encoder = FlaxCLIPTextModel.from_pretrained(folder / "text_encoder", from_pt=True)
        scheduler = FlaxDDPMScheduler.from_config(dict(setup.start.pipeline.scheduler_config))
        scheduler_state = scheduler.create_state()
        opt = _references_optimizer(cfg)
        adamw = optax.adamw(
            opt["lr"], b1=opt["b1"], b2=opt["b2"], eps=opt["eps"], weight_decay=opt["weight_decay"]
        )
        tx = (
            optax.chain(optax.clip_by_global_norm(opt["grad_clip"]), adamw) if opt["grad_clip"] > 0 else adamw
        )
        self.state = train_state.TrainState.create(
            apply_fn=controlnet.__call__, params=controlnet_params, tx=tx
        )
        self.frozen = jax.device_put(
            {"unet": unet_params, "vae": vae_params, "text_encoder": text_encoder.params}
        )
        nchw = lambda x: jnp.asarray(x.transpose(0, 3, 1, 2))  # noqa: E731  (the example's loaders give NCHW)
        self.batch = {
            "pixel_values": nchw(setup.batch["pixels"]),
            "conditioning_pixel_values": nchw(setup.batch["cond"]),
            "input_ids": jnp.asarray(setup.batch["ids"]),
        }
        latent_shape = setup.latent_shape
        train_timesteps = scheduler.config.num_train_timesteps

        def compute_loss(params, frozen, batch, latent_eps, noise, timesteps):
            posterior = vae.apply(
                {"params": frozen["vae"]}, batch["pixel_values"], deterministic=True, method=vae.encode
            ).latent_dist
            # = posterior.sample(key), with the normal draw made outside so a check can pass its own
            latents = posterior.mean + posterior.std * latent_eps
            latents = jnp.transpose(latents, (0, 3, 1, 2)) * vae.config.scaling_factor
            noisy_latents = scheduler.add_noise(scheduler_state, latents, noise, timesteps)
            encoder_hidden_states = text_encoder(
                batch["input_ids"], params=frozen["text_encoder"], train=False
            )[0]
            down_residuals, mid_residual = controlnet.apply(
                {"params": params},
                noisy_latents,
                timesteps,
                encoder_hidden_states,
                batch["conditioning_pixel_values"],
                train=True,
                return_dict=False,
            )
            prediction = unet.apply(
                {"params": frozen["unet"]},
                noisy_latents,
                timesteps,
                encoder_hidden_states,
                down_block_additional_residuals=down_residuals,
                mid_block_additional_residual=mid_residual,
            ).sample
            return jnp.mean(jnp.square(noise - prediction))  # epsilon prediction: the target is the noise

        def train_step(state, frozen, batch, rng):
            sample_rng, next_rng = jax.random.split(rng)
            latent_rng, noise_rng, timestep_rng = jax.random.split(sample_rng, 3)
            latent_eps = jax.random.normal(latent_rng, latent_shape)
            nchw_shape = (latent_shape[0], latent_shape[3], latent_shape[1], latent_shape[2])
            noise = jax.random.normal(noise_rng, nchw_shape)
            timesteps = jax.random.randint(timestep_rng, (latent_shape[0],), 0, train_timesteps)
            loss, grads = jax.value_and_grad(compute_loss)(
                state.params, frozen, batch, latent_eps, noise, timesteps
            )
            return state.apply_gradients(grads=grads), {"loss": loss}, next_rng

        def loss_and_grad_norm(params, frozen, batch, latent_eps, noise, timesteps):
            loss, grads = jax.value_and_grad(compute_loss)(
                params, frozen, batch, latent_eps, noise, timesteps
            )
            return loss, optax.global_norm(grads)

        # The example pmaps the step over the devices (donating the state); on one CPU device jit with
        # the state donated is the same program without the device axis.
        self.rng = jax.random.key(0)
        self.compiled = (
            jax.jit(train_step, donate_argnums=(0,))
            .lower(self.state, self.frozen, self.batch, self.rng)
            .compile()
        )
        self.flops = flops_of(self.compiled)
        self._check_fn = jax.jit(loss_and_grad_norm)

    def run(self, steps: int) -> dict:
        metrics = None
        for _ in range(steps):
            self.state, metrics, self.rng = self.compiled(self.state, self.frozen, self.batch, self.rng)
        return ready((self.state, metrics))[1]

    def loss_and_grad_norm(self, draws: dict[str, np.ndarray]) -> tuple[float, float]:
        """Loss and gradient norm at the current weights for explicit draws (NHWC, as ours makes them)."""
        batch = {**self.batch, "input_ids": draws["ids"]}
        loss, norm = self._check_fn(
            self.state.params,
            self.frozen,
            batch,
            draws["latent_eps"],
            draws["noise"].transpose(0, 3, 1, 2),
            draws["timesteps"],
        )
        return float(loss), float(norm)


# -- reference: diffusers 0.39 torch -----------------------------------------------------------------


class TorchReferenceStep:
    """diffusers' torch ControlNet training example, reduced to its step: frozen parts without gradients,
    the ControlNet trained with torch.optim.AdamW after global-norm clipping."""

    def __init__(self, setup: Setup, threads: int):
        import torch
        from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel

        torch.set_num_threads(threads)
        folder, cfg = setup.folder, setup.cfg
        self.vae = AutoencoderKL.from_pretrained(folder / "vae")
        self.text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
        self.unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        self.controlnet = ControlNetModel.from_pretrained(folder / "controlnets" / cfg.model.condition)
        for frozen in (self.vae, self.text_encoder, self.unet):
            frozen.requires_grad_(False)
        self.controlnet.train()
        self.scheduler = DDPMScheduler.from_config(dict(setup.start.pipeline.scheduler_config))
        opt = _references_optimizer(cfg)
        self.grad_clip = opt["grad_clip"]
        self.optimizer = torch.optim.AdamW(
            self.controlnet.parameters(),
            lr=opt["lr"],
            betas=(opt["b1"], opt["b2"]),
            eps=opt["eps"],
            weight_decay=opt["weight_decay"],
        )
        nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
        self.pixel_values = nchw(setup.batch["pixels"])
        self.conditioning_pixel_values = nchw(setup.batch["cond"])
        self.input_ids = torch.from_numpy(setup.batch["ids"].astype(np.int64))
        b, h, w, c = setup.latent_shape
        self.latent_shape = (b, c, h, w)
        self.generator = torch.Generator().manual_seed(0)

    def loss(self, input_ids, latent_eps, noise, timesteps):
        import torch
        import torch.nn.functional as F

        with torch.no_grad():  # frozen parts: no graph (the example gets the same from requires_grad False)
            posterior = self.vae.encode(self.pixel_values).latent_dist
            latents = (posterior.mean + posterior.std * latent_eps) * self.vae.config.scaling_factor
            encoder_hidden_states = self.text_encoder(input_ids, return_dict=False)[0]
        noisy_latents = self.scheduler.add_noise(latents, noise, timesteps)
        down_residuals, mid_residual = self.controlnet(
            noisy_latents,
            timesteps,
            encoder_hidden_states=encoder_hidden_states,
            controlnet_cond=self.conditioning_pixel_values,
            return_dict=False,
        )
        prediction = self.unet(
            noisy_latents,
            timesteps,
            encoder_hidden_states=encoder_hidden_states,
            down_block_additional_residuals=down_residuals,
            mid_block_additional_residual=mid_residual,
            return_dict=False,
        )[0]
        return F.mse_loss(prediction.float(), noise.float(), reduction="mean")

    def run(self, steps: int) -> float:
        import torch

        loss = None
        for _ in range(steps):
            latent_eps = torch.randn(self.latent_shape, generator=self.generator)
            noise = torch.randn(self.latent_shape, generator=self.generator)
            timesteps = torch.randint(
                0,
                self.scheduler.config.num_train_timesteps,
                (self.latent_shape[0],),
                generator=self.generator,
            )
            loss = self.loss(self.input_ids, latent_eps, noise, timesteps)
            loss.backward()
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.controlnet.parameters(), self.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()) if loss is not None else float("nan")  # torch runs synchronously on CPU

    def loss_and_grad_norm(self, draws: dict[str, np.ndarray]) -> tuple[float, float]:
        """Loss and gradient norm at the current weights for explicit draws; the weights stay as they are."""
        import torch

        nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # noqa: E731
        loss = self.loss(
            torch.from_numpy(draws["ids"].astype(np.int64)),
            nchw(draws["latent_eps"]),
            nchw(draws["noise"]),
            torch.from_numpy(draws["timesteps"].astype(np.int64)),
        )
        loss.backward()
        norm = torch.sqrt(sum(p.grad.double().square().sum() for p in self.controlnet.parameters()))
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), float(norm)
