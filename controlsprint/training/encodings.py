"""Frozen encodings computed once per dataset row instead of once per step.

In ControlNet and UNet training the VAE encoder and the text encoder are frozen, so what they make of
a row never changes: its latent posterior (mean and log-variance) and its caption's hidden states.
`encode_dataset` runs both over the dataset once, before the first step; the step then samples the
latent from the cached posterior (fresh noise every step, so the training signal is the same) and
swaps in the empty prompt's hidden states for caption dropout. The step no longer runs either encoder,
and their weights stay off the devices. maxdiffusion and diffusers' SDXL scripts train the same way.

It applies in "controlnet" and "unet" modes when `data.cache_encodings` is on and `data.crop` is 0
(a random crop changes the pixels each step), when the run sees more samples than the dataset has
rows (otherwise the pass costs more than it saves), and when the cache fits `MAX_CACHE_BYTES` of host
memory (a real SD1.5 dataset of 100k captions would need ~36 GB: those runs encode every step).
Every process holds the whole cache: data order permutes all rows every epoch, so any process can
need any row. The pass itself is shared: each process encodes its slice of every chunk.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from controlsprint.training import sharding as shd
from controlsprint.training.config import TrainConfig

MAX_CACHE_BYTES = 4 << 30
CACHED_KEYS = ("latent_mean", "latent_logvar", "text")  # batch keys that replace "pixels" and "ids"


def cached_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """The batch keys the cache supplies: a text encoder that trains is never cached (the step reads ids)."""
    return CACHED_KEYS[:2] if cfg.model.train_text_encoder else CACHED_KEYS


@dataclasses.dataclass(frozen=True)
class EncodingCache:
    latent_mean: np.ndarray  # [N, h, w, c] float32, unscaled (as the VAE's encoder gives it)
    latent_logvar: np.ndarray  # [N, h, w, c]
    text: np.ndarray | None  # [N, T, D] the text encoder's last hidden states (None: it trains)
    empty_text: np.ndarray | None  # [T, D] the empty prompt's, for caption dropout
    seconds: float  # how long the pass took

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """The cached batch entries of dataset rows `indices`."""
        keys = CACHED_KEYS if self.text is not None else CACHED_KEYS[:2]
        return {key: getattr(self, key)[indices] for key in keys}


def cache_bytes(ctx, frozen, rows: int, resolution: int, text_length: int) -> int:
    """Host bytes the cache of `rows` rows would take (shapes from an abstract evaluation)."""
    mean, _, text = jax.eval_shape(
        functools.partial(_encode, ctx),
        frozen,
        jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32),
        jax.ShapeDtypeStruct((1, text_length), jnp.int32),
    )
    per_row = 2 * np.prod(mean.shape[1:]) + (0 if text is None else np.prod(text.shape[1:]))
    return int(rows * per_row * 4)


def applies(cfg: TrainConfig) -> bool:
    return cfg.data.cache_encodings and cfg.model.mode in ("controlnet", "unet") and cfg.data.crop == 0


def reason_to_encode_every_step(cfg: TrainConfig, rows: int, size: int) -> str | None:
    """Why a run the cache applies to should still not use it (None: use it). Decided from the whole
    run's length, not what is left of it, so a resumed run decides as the uninterrupted one did."""
    samples = cfg.run.steps * cfg.run.batch_size
    if samples <= rows:  # the pass encodes every row once: it only pays when rows come back
        return f"the run's {samples} samples are at most one pass over the {rows} rows"
    if size > MAX_CACHE_BYTES:
        return f"caching {rows} rows would take {size / 2**30:.1f} GiB (over {MAX_CACHE_BYTES / 2**30:.0f})"
    return None


def _encode(ctx, frozen, pixels, ids):
    mean, logvar = ctx.modules["vae"].apply({"params": frozen["vae"]}, pixels, method="encode")
    # no frozen text encoder: it trains with the UNet, and the step encodes the captions itself
    text = _encode_text(ctx, frozen, ids) if "text_encoder" in frozen else None
    return mean.astype(jnp.float32), logvar.astype(jnp.float32), text


def _encode_text(ctx, frozen, ids):
    return ctx.modules["text_encoder"].apply({"params": frozen["text_encoder"]}, ids)[0].astype(jnp.float32)


def encoder(ctx, mesh):
    """The jitted pass over one global chunk: (frozen, pixels, ids) -> (mean, logvar, text), sharded
    over the batch axes like a training batch."""
    rows = shd.batch_sharding(mesh)
    return jax.jit(
        functools.partial(_encode, ctx),
        in_shardings=(shd.replicated(mesh), rows, rows),
        out_shardings=(rows, rows, rows),
    )


def to_host(tree):
    """Every process's rows of global arrays, as numpy, on every process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def empty_prompt(ctx, frozen) -> np.ndarray:
    """The text encoder's states of the empty prompt [T, D] (what caption dropout trains on)."""
    return np.asarray(jax.jit(functools.partial(_encode_text, ctx))(frozen, ctx.empty_ids[None])[0])


def encode_dataset(ctx, frozen, dataset, cfg: TrainConfig, tokenizer, mesh) -> EncodingCache:
    """Every row of `dataset` through the frozen encoders, in chunks of one global batch."""
    import time

    start = time.perf_counter()
    chunk = cfg.run.batch_size
    per_process = chunk // jax.process_count()
    first = jax.process_index() * per_process
    count = len(dataset)
    order = np.arange(-(-count // chunk) * chunk) % count  # the last chunk padded with rows from the start
    encode = encoder(ctx, mesh)
    parts = []
    for offset in range(0, len(order), chunk):
        mine = order[offset + first : offset + first + per_process]
        images, texts = dataset.images_and_texts(mine, resolution=cfg.data.resolution)
        local = {"pixels": images, "ids": tokenizer(texts)}
        batch = shd.global_batch(mesh, local)
        parts.append(to_host(encode(frozen, batch["pixels"], batch["ids"])))
    mean, logvar = (np.concatenate([part[i] for part in parts])[:count] for i in (0, 1))
    if "text_encoder" not in frozen:
        return EncodingCache(mean, logvar, None, None, time.perf_counter() - start)
    text = np.concatenate([part[2] for part in parts])[:count]
    return EncodingCache(mean, logvar, text, empty_prompt(ctx, frozen), time.perf_counter() - start)


def step_frozen(frozen: dict, empty_text: np.ndarray) -> dict:
    """The step's frozen tree once encodings are cached: no encoders, the empty prompt's states instead."""
    kept = {key: value for key, value in frozen.items() if key not in ("vae", "text_encoder")}
    return kept if empty_text is None else {**kept, "empty_text": empty_text}
