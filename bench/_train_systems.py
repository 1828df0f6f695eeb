"""What bench/train.py measures on: one tiny ControlNet setup, and controlsprint's own train step.

`make_setup` builds the `tiny` config's starting point (fresh pipeline, ControlNet copied from the UNet's
encoder) and one fixed random batch, and writes the same weights in the PyTorch-diffusers layout so
the references (bench/_train_references.py) load them with their own loaders. `OursStep` is
controlsprint's `train_step`, built, sharded, donated and compiled ahead of time as
controlsprint/training/trainer.py does it; `run(n)` takes n optimiser steps and returns once the last
has finished, and `draws(setup, step)` gives the random values that step used, to feed the references.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

CAPTIONS = (
    "a red circle above a blue square",
    "a green triangle on a white background",
    "two yellow squares side by side",
    "a small black circle inside a large grey ring",
    "an orange square below a purple circle",
    "three blue dots in a row",
    "a pink triangle next to a cyan square",
    "a white star on a dark background",
)


@dataclasses.dataclass(frozen=True)
class Setup:
    cfg: Any  # TrainConfig
    start: Any  # StartingPoint (the trainable ControlNet's zero convolutions nudged, see make_setup)
    batch: dict[str, np.ndarray]  # pixels NHWC [-1, 1], cond NHWC [0, 1], ids [B, T] int32
    folder: Path  # the same pipeline in the PyTorch-diffusers layout

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        """NHWC shape of the VAE's latents for this batch."""
        vae = self.start.pipeline.vae.config
        side = self.batch["pixels"].shape[1] // vae.downscale
        return (self.batch["pixels"].shape[0], side, side, vae.latent_channels)


def make_setup(batch_size: int, size: int, root: Path) -> Setup:
    import jax

    from controlsprint.cli.train import load_train_config
    from controlsprint.models.io import Component
    from controlsprint.models.pipeline import save_pipeline
    from controlsprint.training.models import starting_point

    cfg = load_train_config("tiny", [f"run.batch_size={batch_size}", f"data.resolution={size}"])
    if cfg.model.mode != "controlnet":
        raise SystemExit(
            f"bench/train.py measures ControlNet training; the tiny config says {cfg.model.mode}"
        )
    start = starting_point(cfg, list(CAPTIONS))
    # The zero convolutions start at zero, so the ControlNet's residuals would be exactly zero at step 0
    # and the loss check could not see the ControlNet at all. Nudged, they carry real values; the work
    # (and so the speed) of a step does not depend on the values.
    noise = np.random.default_rng(0)
    nudged = jax.tree_util.tree_map_with_path(
        lambda path, x: (
            np.asarray(x)
            + (0.02 * noise.standard_normal(np.shape(x)).astype(np.float32) if _is_zero_conv(path) else 0.0)
        ),
        start.trainable.params,
    )
    start = dataclasses.replace(start, trainable=Component("controlnet", start.trainable.config, nudged))
    pipeline = start.pipeline.with_controlnets({cfg.model.condition: start.trainable})
    folder = save_pipeline(root / "pt", pipeline, fmt="pytorch")

    data = np.random.default_rng(1)
    batch = {
        "pixels": data.uniform(-1.0, 1.0, (batch_size, size, size, 3)).astype(np.float32),
        "cond": data.uniform(0.0, 1.0, (batch_size, size, size, 3)).astype(np.float32),
        "ids": start.pipeline.tokenizer([CAPTIONS[i % len(CAPTIONS)] for i in range(batch_size)]),
    }
    return Setup(cfg, start, batch, folder)


def _is_zero_conv(path) -> bool:
    names = [str(getattr(key, "key", key)) for key in path]
    return any(n.startswith("controlnet_") for n in names) or "conv_out" in names


def flops_of(compiled) -> float:
    cost = compiled.cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))


# -- ours ----------------------------------------------------------------------------------------


class OursStep:
    """`train_step` exactly as the trainer builds it (`step_context`, then section 3 of trainer.py).

    With the config's `data.cache_encodings` on (the default), the trainer runs the frozen encoders
    over the dataset once before step 1 (training/encodings.py) and the step reads their outputs; here
    the "dataset" is the one fixed batch, so it is encoded once the same way, and `encode_ms_per_sample`
    is what that pass costs (timed after its compile): the price a run pays once per dataset row.
    `cache=False` builds the step that encodes every batch itself, as the references do.
    """

    def __init__(self, setup: Setup, cache: bool = True):
        import time

        import jax
        import jax.numpy as jnp

        from controlsprint.training import encodings
        from controlsprint.training import sharding as shd
        from controlsprint.training.models import step_context
        from controlsprint.training.step import init_state, train_step

        cfg = dataclasses.replace(setup.cfg, data=dataclasses.replace(setup.cfg.data, cache_encodings=cache))
        trainable = setup.start.trainable
        self.ctx, frozen = step_context(cfg, setup.start)
        mesh = shd.make_mesh(cfg.mesh)
        batch = dict(setup.batch)
        self.encode_ms_per_sample = None
        if encodings.applies(cfg):
            encode = encodings.encoder(self.ctx, mesh)
            inputs = shd.global_batch(mesh, {"pixels": batch.pop("pixels"), "ids": batch.pop("ids")})
            ready(encode(frozen, inputs["pixels"], inputs["ids"]))  # compile
            timings = []
            for _ in range(3):
                start = time.perf_counter()
                encoded = encodings.to_host(encode(frozen, inputs["pixels"], inputs["ids"]))
                timings.append(time.perf_counter() - start)
            self.encode_ms_per_sample = float(np.median(timings)) * 1e3 / len(batch["cond"])
            batch.update(zip(encodings.CACHED_KEYS, encoded, strict=True))
            frozen = encodings.step_frozen(frozen, encodings.empty_prompt(self.ctx, frozen))
        init = functools.partial(init_state, self.ctx)
        state_sharding = shd.tree_shardings(mesh, jax.eval_shape(init, trainable.params, frozen))
        self.state = jax.jit(init, out_shardings=state_sharding)(trainable.params, frozen)
        step_fn = jax.jit(
            functools.partial(train_step, self.ctx),
            in_shardings=(
                state_sharding,
                {k: shd.batch_sharding(mesh) for k in batch},
                shd.replicated(mesh),
                shd.replicated(mesh),
            ),
            out_shardings=(state_sharding, shd.replicated(mesh)),
            donate_argnums=0,
        )
        self.batch = shd.global_batch(mesh, batch)
        self.base_key = jax.random.key(cfg.run.seed)
        self.steps_taken = 0
        self.learning_rate = jnp.float32(cfg.optim.learning_rate)  # the peak rate every timed step
        self.compiled = step_fn.lower(self.state, self.batch, self.rng(0), self.learning_rate).compile()
        self.flops = flops_of(self.compiled)

    def rng(self, step: int):
        import jax

        return jax.random.fold_in(self.base_key, step)  # as the trainer: a pure function of (seed, step)

    def run(self, steps: int) -> dict:
        metrics = None
        for _ in range(steps):
            self.state, metrics = self.compiled(
                self.state, self.batch, self.rng(self.steps_taken), self.learning_rate
            )
            self.steps_taken += 1
        return ready((self.state, metrics))[1]

    def draws(self, setup: Setup, step: int) -> dict[str, np.ndarray]:
        """The random values `_denoising_loss` (step.py) draws from this step's key, in its order, so
        the references can be fed the very same ones."""
        import jax

        from controlsprint.schedulers import sample_timesteps

        rng_latent, rng_noise, rng_t, rng_drop = jax.random.split(self.rng(step), 4)
        shape, batch_size = setup.latent_shape, setup.latent_shape[0]
        dropped = np.asarray(jax.random.uniform(rng_drop, (batch_size, 1))) < self.ctx.caption_dropout
        return {
            "latent_eps": np.asarray(jax.random.normal(rng_latent, shape)),  # NHWC
            "noise": np.asarray(jax.random.normal(rng_noise, shape)),  # NHWC
            "timesteps": np.asarray(sample_timesteps(self.ctx.schedule, rng_t, batch_size)),
            "ids": np.where(dropped, self.ctx.empty_ids[None], setup.batch["ids"]).astype(np.int32),
        }


def ready(tree):
    """`tree` once every array in it is computed (JAX dispatches asynchronously)."""
    import jax

    return jax.block_until_ready(tree)
