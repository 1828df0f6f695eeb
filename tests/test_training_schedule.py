"""The learning-rate schedule lives outside the compiled step (training/optim.py): `train_step` takes the
step's rate as an argument. The update must be optax.adamw's on the same schedule, and runs that differ
only in rate, warmup or length must lower to one identical program (one compile, cached for the rest)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from controlsprint.cli.train import load_train_config
from controlsprint.data.reader import ShardedDataset
from controlsprint.training.config import OptimSection
from controlsprint.training.models import starting_point, step_context
from controlsprint.training.optim import learning_rate_schedule, learning_rates, make_optimizer
from controlsprint.training.step import init_state, train_step
from tests.training_helpers import make_dataset


@pytest.mark.parametrize("flat", [False, True])
def test_direction_times_the_rate_is_optax_adamw_on_the_schedule(flat):
    cfg = OptimSection(
        learning_rate=3e-3, warmup_steps=3, schedule="cosine", weight_decay=0.01, grad_clip=1.0
    )
    steps = 8
    rng = np.random.default_rng(0)
    params = {
        "a": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=4), jnp.float32),
    }
    ours, reference = dict(params), dict(params)
    optimizer = make_optimizer(cfg, flat=flat)
    adamw = optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.adamw(
            learning_rate_schedule(cfg, steps),
            b1=cfg.b1,
            b2=cfg.b2,
            eps=cfg.eps,
            weight_decay=cfg.weight_decay,
        ),
    )
    state, reference_state = optimizer.init(ours), adamw.init(reference)
    rates = learning_rates(cfg, steps)
    assert rates.dtype == np.float32 and rates.shape == (steps,)
    assert rates[0] == 0.0 and rates[3] == pytest.approx(3e-3) and rates[-1] < rates[4]  # warmup, peak, decay
    for step in range(steps):
        grads = jax.tree_util.tree_map(
            lambda p: jnp.asarray(rng.normal(size=p.shape) * 3, jnp.float32), params
        )
        direction, state = optimizer.update(grads, state, ours)
        step_size = -rates[step]
        ours = optax.apply_updates(ours, jax.tree_util.tree_map(lambda d, s=step_size: s * d, direction))
        updates, reference_state = adamw.update(grads, reference_state, reference)
        reference = optax.apply_updates(reference, updates)
        for name in params:
            np.testing.assert_allclose(
                ours[name], reference[name], rtol=1e-6, atol=1e-8, err_msg=f"{name} at {step}"
            )
    assert not np.allclose(ours["a"], params["a"])  # the runs did move


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny")


def _lowered_step(data, *overrides: str) -> str:
    """The StableHLO text of the trainer's ControlNet step for the tiny config with `overrides`."""
    cfg = load_train_config(
        "tiny",
        [
            f"data.path={data}",
            "model.mode=controlnet",
            "data.resolution=32",
            "data.cache_encodings=false",
            *overrides,
        ],
    )
    dataset = ShardedDataset(data)
    start = starting_point(cfg, dataset.read_rows(np.arange(len(dataset)), ["text"])["text"])
    ctx, frozen = step_context(cfg, start)
    state = init_state(ctx, start.trainable.params, frozen)
    raw = next(dataset.batches(4, seed=0, condition="canny", resolution=32))
    batch = {
        "pixels": raw["pixel_values"],
        "ids": start.pipeline.tokenizer(raw["text"]),
        "cond": raw["conditioning_pixel_values"],
    }
    rate = jnp.asarray(learning_rates(cfg.optim, cfg.run.steps)[0])
    return jax.jit(functools.partial(train_step, ctx)).lower(state, batch, jax.random.key(0), rate).as_text()


def test_runs_that_differ_only_in_their_schedule_compile_one_program(data):
    first = _lowered_step(data, "optim.learning_rate=5e-4", "optim.warmup_steps=50", "run.steps=600")
    other = _lowered_step(data, "optim.learning_rate=1e-3", "optim.warmup_steps=10", "run.steps=1000")
    assert first == other
    # what does shape the update still changes the program
    assert _lowered_step(data, "optim.weight_decay=0.05") != first
