"""The training loop, in labelled sections: setup, model, state, data, loop, finish.

    summary = train(get_config(), resume=False)

One jitted `train_step` (see step.py), compiled once ahead of time with explicit shardings and the
state donated. Data order, noise and dropout are pure functions of (seed, step), so a run resumed
from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from controlsprint.config import to_dict
from controlsprint.errors import UserError
from controlsprint.hardware import peak_flops
from controlsprint.training import encodings
from controlsprint.training import sharding as shd
from controlsprint.training.config import TrainConfig, check_config
from controlsprint.training.crops import random_crops
from controlsprint.training.step import init_state, train_step


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was saved. `exit_code` follows the shell convention."""

    def __init__(self, signum: int, step: int):
        self.exit_code = 128 + signum
        self.step = step
        super().__init__(
            f"stopped by signal {signum} at step {step}; checkpoint saved, continue with --resume"
        )


class Diverged(UserError):
    pass


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps (then saves and stops)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _log(message: str) -> None:
    if jax.process_index() == 0:
        print(message, flush=True)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> dict:
    # == 1. setup: config, mesh, output, data ==========================================================
    from controlsprint.data.reader import ShardedDataset
    from controlsprint.training.checkpoints import Checkpointer
    from controlsprint.training.models import initial_params, starting_point, step_context
    from controlsprint.training.optim import learning_rates

    check_config(cfg)
    mode = cfg.model.mode
    out = Path(cfg.run.output_dir)
    dataset = ShardedDataset(cfg.data.path)
    condition = cfg.model.condition if mode == "controlnet" else None
    foreground = cfg.data.foreground_condition if cfg.optim.foreground_weight != 1 else None
    for needed in {condition, foreground}:  # a missing condition column is an error now, not at step 1
        dataset.column_for(needed)
    if mode == "video" and not dataset.has_clips:
        raise UserError(
            f"data.path {cfg.data.path}: video mode needs clips (controlsprint synth --kinds motion)"
        )
    mesh = shd.make_mesh(cfg.mesh)
    shd.check_batch(cfg.run.batch_size, mesh, cfg.optim.grad_accum)
    checkpointer = Checkpointer(
        out / "checkpoints", keep=cfg.run.keep_checkpoints, asynchronous=cfg.run.async_checkpoints
    )
    if checkpointer.latest_step() is not None and not resume:
        raise UserError(f"{out} already has checkpoints; pass --resume to continue, or set run.output_dir")

    # == 2. model: starting point, modules, the step ===================================================
    texts = dataset.read_rows(np.arange(len(dataset)), ["text"])["text"]
    start = starting_point(cfg, texts)
    pipeline = start.pipeline
    ctx, frozen = step_context(cfg, start)
    cache = _encode_once(cfg, ctx, frozen, dataset, texts, pipeline.tokenizer, mesh)
    if cache is not None:  # the step reads cached encodings; the encoders stay off the devices
        frozen = encodings.step_frozen(frozen, cache.empty_text)

    # == 3. state: fresh (sharded by the rules) or restored =============================================
    trainable = initial_params(cfg, start)
    abstract = jax.eval_shape(functools.partial(init_state, ctx), trainable, frozen)
    state_sharding = shd.tree_shardings(mesh, abstract)
    state = jax.jit(functools.partial(init_state, ctx), out_shardings=state_sharding)(trainable, frozen)
    first_step = 0
    if resume and checkpointer.latest_step() is not None:
        state, record = checkpointer.restore(state)
        first_step = int(jax.device_get(state.step))
        _log(f"resumed {out} at step {first_step}")
    batch_keys = [
        *(
            encodings.cached_keys(cfg)
            if cache is not None
            else ["frames" if mode == "video" else "pixels", *([] if mode == "vae" else ["ids"])]
        ),
        *(["ids"] if cache is not None and cache.text is None else []),
        *(["cond"] if mode == "controlnet" else []),
        *(["foreground"] if foreground else []),
    ]
    batch_sharding = {k: shd.batch_sharding(mesh) for k in batch_keys}
    step_fn = jax.jit(
        functools.partial(train_step, ctx),
        in_shardings=(state_sharding, batch_sharding, shd.replicated(mesh), shd.replicated(mesh)),
        out_shardings=(state_sharding, shd.replicated(mesh)),
        donate_argnums=0,
    )

    # == 4. data: this process's slice of every global batch, from the current step ====================
    per_process = cfg.run.batch_size // jax.process_count()
    stream = dataset.batches(
        per_process,
        seed=cfg.data.seed,
        condition=condition,
        resolution=cfg.data.resolution,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        start_step=first_step,
        prefetch=cfg.data.prefetch,
        images=cache is None,
        foreground=foreground,
    )

    def host_batch(raw: dict) -> dict:
        if cache is not None:
            batch = cache.rows(raw["rows"])
            if cache.text is None:  # the text encoder trains: the step encodes the captions
                batch["ids"] = pipeline.tokenizer(raw["text"])
        else:
            batch = {"frames": raw["frames"]} if mode == "video" else {"pixels": raw["pixel_values"]}
            if mode != "vae":
                batch["ids"] = pipeline.tokenizer(raw["text"])
        if mode == "controlnet":
            batch["cond"] = raw["conditioning_pixel_values"]
        if foreground:
            batch["foreground"] = raw["foreground"]
        if cfg.data.crop:
            batch = random_crops(batch, cfg, raw["step"], per_process)
        return batch

    # == 5. loop =======================================================================================
    from tqdm import tqdm

    from controlsprint.training.logs import RunLogger

    is_main = jax.process_index() == 0
    logger = RunLogger(out, enabled=is_main, config=to_dict(cfg))
    rates = learning_rates(cfg.optim, cfg.run.steps)  # an argument of the step, not a constant in it
    base_key = jax.random.key(cfg.run.seed)
    record = {"config": to_dict(cfg), "mode": mode, "condition": cfg.model.condition}
    validator = _validator(cfg, dataset, pipeline, start.trainable, condition) if is_main else None
    compiled, flops, window_start, window_steps = None, 0.0, time.perf_counter(), 0
    peak = peak_flops(jax.devices()[0].platform, mesh.size, jax.process_count())  # for MFU
    metrics_host: dict = {}
    bar = tqdm(
        total=cfg.run.steps,
        initial=first_step,
        desc=cfg.name,
        unit="step",
        disable=not (progress and is_main),
    )
    with _StopFlag() as stop:
        for step in range(first_step, cfg.run.steps):
            batch = shd.global_batch(mesh, host_batch(next(stream)))
            rng = jax.random.fold_in(base_key, step)
            learning_rate = jnp.asarray(rates[step])
            if compiled is None:  # compile once, ahead of time, and read the step's cost
                compiled = step_fn.lower(state, batch, rng, learning_rate).compile()
                cost = compiled.cost_analysis()
                flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0))
                window_start = time.perf_counter()
            state, metrics = compiled(state, batch, rng, learning_rate)
            metrics_host = jax.device_get(metrics)
            if not metrics_host["finite"]:
                checkpointer.wait()
                raise Diverged(
                    f"loss became {float(metrics_host['loss'])} at step {step + 1}; stopped with the last good "
                    f"checkpoint intact in {out / 'checkpoints'} (lower optim.learning_rate?)"
                )
            window_steps += 1
            bar.update(1)
            done = step + 1
            if done % cfg.run.log_every == 0 or done == cfg.run.steps:
                elapsed = time.perf_counter() - window_start
                rate = window_steps / max(elapsed, 1e-9)
                scalars = {
                    "loss": float(metrics_host["loss"]),
                    "grad_norm": float(metrics_host["grad_norm"]),
                    "lr": float(rates[step]),
                    "samples_per_s": rate * cfg.run.batch_size,
                    "mfu": rate * flops / peak,
                }
                logger.scalars(done, scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}", sps=f"{scalars['samples_per_s']:.1f}")
                window_start, window_steps = time.perf_counter(), 0
            if done % cfg.run.checkpoint_every == 0 and done < cfg.run.steps:
                checkpointer.save(state, {**record, "step": done, "samples_seen": done * cfg.run.batch_size})
            if cfg.run.validate_every and done % cfg.run.validate_every == 0 and done < cfg.run.steps:
                _validate(validator, logger, out, done, _export_params(state))
            if stop.signum is not None:
                checkpointer.save(state, {**record, "step": done}, wait=True)
                checkpointer.close()
                bar.close()
                raise Interrupted(stop.signum, done)
    bar.close()

    # == 6. finish: final checkpoint, validation, export ===============================================
    final_step = int(jax.device_get(state.step))
    # a run killed after its last checkpoint but before export resumes straight to here: keep that checkpoint
    if checkpointer.latest_step() != final_step:
        checkpointer.save(
            state, {**record, "step": final_step, "samples_seen": final_step * cfg.run.batch_size}, wait=True
        )
    checkpointer.close()
    params = _export_params(state)
    summary = {
        "steps": final_step,
        "loss": float(metrics_host["loss"]) if metrics_host else None,  # None: resumed with no steps left
        "output_dir": str(out),
    }
    if is_main:
        grid, scores = _validate(validator, logger, out, final_step, params)
        summary["validation"] = scores
        if cfg.run.export:
            summary["export"] = str(_export(cfg, pipeline, start.trainable, params, dataset, scores))
        logger.loss_curve()
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    logger.close()
    stream.close()
    _wait_for_every_process("controlsprint-train-finished")
    return summary


def _encode_once(cfg: TrainConfig, ctx, frozen, dataset, texts, tokenizer, mesh):
    """The dataset's frozen encodings (training/encodings.py) when they apply and fit; else None."""
    if not encodings.applies(cfg):
        return None
    size = encodings.cache_bytes(ctx, frozen, len(dataset), cfg.data.resolution, len(ctx.empty_ids))
    reason = encodings.reason_to_encode_every_step(cfg, len(dataset), size)
    key = None  # the on-disk store's name for these encodings (data.encodings_dir, one process only)
    if cfg.data.encodings_dir and jax.process_count() == 1:
        from controlsprint.training import encodings_store

        key = encodings_store.store_key(frozen, dataset, tokenizer(texts), cfg.data.resolution)
    elif cfg.data.encodings_dir:
        _log("data.encodings_dir: multi-process runs keep their encodings in memory")
    if reason is not None:
        # A run too short to pay for a pass of its own still reads one that another run stored: the
        # embedded build's 300 gray steps of 16 took 387 s on one core reading it, 535 s encoding.
        cache = None
        if key is not None and size <= encodings.MAX_CACHE_BYTES:
            cache = encodings_store.read_stored(cfg.data.encodings_dir, key)
        if cache is None:
            _log(f"encoding every step: {reason} (data.cache_encodings=false silences this)")
            return None
        stored = True
    elif key is not None:
        encode = functools.partial(encodings.encode_dataset, ctx, frozen, dataset, cfg, tokenizer, mesh)
        cache, stored = encodings_store.load_or_encode(cfg.data.encodings_dir, key, encode)
    else:
        cache, stored = encodings.encode_dataset(ctx, frozen, dataset, cfg, tokenizer, mesh), False
    what = f"VAE latents{'' if cache.text is None else ', captions'}"
    if stored:
        _log(
            f"read the encodings of {len(dataset)} rows ({what}) from {cfg.data.encodings_dir}: {cache.seconds:.1f} s"
        )
    else:
        _log(f"encoded {len(dataset)} rows once ({what}): {cache.seconds:.1f} s, {size / 2**20:.0f} MiB")
    return cache


def _wait_for_every_process(name: str, timeout_s: int = 3600) -> None:
    """Keep the processes together until process 0 has validated and exported: a process that exits
    early would leave JAX's shutdown barrier waiting on one that is still busy."""
    if jax.process_count() > 1:
        from jax._src import distributed

        distributed.global_state.client.wait_at_barrier(name, timeout_in_ms=timeout_s * 1000)


def _export_params(state):
    """Host copies of the weights to publish (the EMA when there is one), from every process."""
    from jax.experimental import multihost_utils

    tree = state.ema if state.ema is not None else state.params
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def _validator(cfg: TrainConfig, dataset, pipeline, trainable, condition):
    from controlsprint.training.validate import Validator

    count = min(cfg.run.validation_samples, len(dataset))
    examples = dataset.examples(np.arange(count), resolution=cfg.data.resolution, condition=condition)
    if cfg.model.mode == "controlnet":  # the validator's core needs the ControlNet being trained
        pipeline = pipeline.with_controlnets({cfg.model.condition: trainable})
    if cfg.model.mode == "video":  # ... and the temporal layers
        pipeline = dataclasses.replace(pipeline, temporal=trainable)
    return Validator(pipeline, cfg.model.mode, cfg.model.condition, examples, cfg.run.validation_steps)


def _validate(validator, logger, out: Path, step: int, params) -> tuple:
    if validator is None:
        return None, {}
    from controlsprint.imageio import save_png

    image, scores = validator.run(params)
    save_png(out / "validation" / f"step_{step:06d}.png", image)
    logger.image(step, "validation", image)
    if scores:
        logger.validation(step, scores)
        _log(f"validation at step {step}: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return image, scores


def _export(cfg: TrainConfig, pipeline, trainable, params, dataset, scores) -> Path:
    """The run's result as a pipeline folder (Flax layout) plus a PyTorch-diffusers copy."""
    from controlsprint.models.export import export
    from controlsprint.models.io import Component
    from controlsprint.models.pipeline import save_pipeline

    out = Path(cfg.run.output_dir) / "export"
    trained = Component(trainable.kind, trainable.config, params)
    meta = {**pipeline.meta, "base_model": cfg.model.base or f"controlsprint/{cfg.model.architecture}-fresh"}
    meta["training"] = {
        "config": cfg.name,
        "steps": cfg.run.steps,
        "batch_size": cfg.run.batch_size,
        "data_seed": cfg.data.seed,
    }
    if scores:
        meta["eval"] = scores
    if cfg.model.mode == "vae":
        if cfg.model.vae_part == "whole":  # a frozen encoder keeps its latents, so their scaling too
            trained = _with_latent_scaling(trained, dataset, cfg)
        result = dataclasses.replace(pipeline, vae=trained, meta=meta)
    elif cfg.model.mode == "unet" and cfg.model.train_text_encoder:
        unet = Component(trainable.kind, trainable.config, params["unet"])
        text = dataclasses.replace(pipeline.text_encoder, params=params["text_encoder"])
        result = dataclasses.replace(pipeline, unet=unet, text_encoder=text, meta=meta)
    elif cfg.model.mode == "unet":
        result = dataclasses.replace(pipeline, unet=trained, meta=meta)
    elif cfg.model.mode == "video":
        result = dataclasses.replace(pipeline, temporal=trained, meta=meta)
    else:
        result = dataclasses.replace(
            pipeline,
            controlnets={cfg.model.condition: trained},
            meta={**meta, "condition": cfg.model.condition},
        )
    save_pipeline(out / "pipeline", result)
    export(out / "pipeline", out / "pytorch", fmt="pytorch", overwrite=True)
    return out / "pipeline"


def _with_latent_scaling(vae, dataset, cfg: TrainConfig, samples: int = 256):
    """Stable Diffusion scales latents to unit variance: scaling_factor = 1 / std of encoded latents."""
    count = min(samples, len(dataset))
    pixels = (
        dataset.examples(np.arange(count), resolution=cfg.data.resolution)["images"].astype(np.float32)
        / 127.5
        - 1.0
    )
    module = vae.module()
    means = [
        np.asarray(module.apply({"params": vae.params}, pixels[i : i + 32], method="encode")[0])
        for i in range(0, count, 32)
    ]
    std = float(np.concatenate(means).std())
    return dataclasses.replace(
        vae, config=dataclasses.replace(vae.config, scaling_factor=round(1.0 / std, 5))
    )
