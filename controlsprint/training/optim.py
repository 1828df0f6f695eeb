"""The optimiser: global-norm clipping, then AdamW on a warmup + constant/cosine learning-rate schedule.

The schedule is not part of the compiled step. `make_optimizer` returns AdamW's update direction (Adam
moments plus weight decay, before the learning rate), and `train_step` takes the step's learning rate
as an argument (`learning_rates` gives one per step). Runs that differ only in their rate, warmup or
length (the embedded model's canny, segment and gray ControlNets) then compile one identical program,
so each run after the first loads it from the persistent compilation cache instead of compiling again
(segment's first step: 7 s, against 44 s when it compiled its own, on one core).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from controlsprint.training.config import OptimSection


def learning_rate_schedule(cfg: OptimSection, total_steps: int) -> optax.Schedule:
    warmup = max(0, min(cfg.warmup_steps, total_steps))
    if cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.learning_rate, max(1, total_steps - warmup))
    else:
        after = optax.constant_schedule(cfg.learning_rate)
    if warmup == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.learning_rate, warmup), after], [warmup])


def learning_rates(cfg: OptimSection, total_steps: int) -> np.ndarray:
    """float32 [total_steps]: the learning rate of each step (index = optimiser steps taken before it)."""
    schedule = learning_rate_schedule(cfg, total_steps)
    return np.asarray(jax.vmap(schedule)(jnp.arange(total_steps)), np.float32)


def make_optimizer(
    cfg: OptimSection, frozen_parts: tuple[str, ...] = (), *, flat: bool = False
) -> optax.GradientTransformation:
    """Clipped AdamW's update direction, without the learning rate: `train_step` multiplies it by
    minus the step's rate (optax.adamw's `scale_by_learning_rate`, done outside the program).

    `frozen_parts`: top-level parameter groups that must never change (no update, no weight decay,
    no optimiser state), e.g. the encoder when only a VAE's decoder is fine-tuned.

    `flat`: the update runs on all parameters raveled into one vector (optax.flatten), the same
    arithmetic element by element. On CPU each array's update is otherwise its own few small loops,
    and a ControlNet has hundreds of arrays: measured 6 % of the tiny ControlNet step. Only for
    unsharded parameters (one vector cannot keep their fsdp shardings) and without frozen parts."""
    optimizer = _clipped_adamw_direction(cfg)
    if not frozen_parts:
        return optax.flatten(optimizer) if flat else optimizer

    def labels(params):
        return {name: "frozen" if name in frozen_parts else "trained" for name in params}

    return optax.multi_transform({"trained": optimizer, "frozen": optax.set_to_zero()}, labels)


def _clipped_adamw_direction(cfg: OptimSection) -> optax.GradientTransformation:
    # optax.adamw's chain up to (not including) its learning-rate scaling
    adamw = optax.chain(
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(cfg.weight_decay),
    )
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw) if cfg.grad_clip > 0 else adamw
