"""Training on CPU with tiny configs: end to end, invariants, learning, errors, signals, divergence."""

from __future__ import annotations

import json
import signal
import time

import jax
import numpy as np
import pytest

from controlsprint.cli.train import load_train_config
from controlsprint.models.convert import flatten
from controlsprint.models.pipeline import load_pipeline
from tests.training_helpers import exported_params, make_dataset, run_train_process, train_args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny")


def test_one_step_end_to_end(cli, data, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = cli(*train_args(data, out, "run.steps=1"))
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["steps"] == 1 and np.isfinite(summary["loss"])
    assert (out / "checkpoints" / "1").is_dir() and (out / "loss_curve.png").is_file()
    assert (out / "validation" / "step_000001.png").is_file()
    assert any((out / "tensorboard").iterdir())
    pipeline = load_pipeline(out / "export" / "pipeline")
    assert set(pipeline.controlnets) == {"canny"}
    assert (
        out / "export" / "pytorch" / "controlnets" / "canny" / "diffusion_pytorch_model.safetensors"
    ).is_file()
    card = (out / "export" / "pytorch" / "README.md").read_text()
    assert card.startswith("---") and "base_model" in card


def _context_and_state(data, mode: str):
    """The pieces the trainer builds, for invariant checks on the step function itself."""
    import functools

    from controlsprint.data.reader import ShardedDataset
    from controlsprint.schedulers import from_diffusers_config
    from controlsprint.training.models import starting_point
    from controlsprint.training.optim import learning_rates, make_optimizer
    from controlsprint.training.step import StepContext, init_state, train_step

    cfg = load_train_config("tiny", [f"data.path={data}", f"model.mode={mode}", "optim.learning_rate=1e-3"])
    dataset = ShardedDataset(data)
    start = starting_point(cfg, dataset.read_rows(np.arange(len(dataset)), ["text"])["text"])
    pipe = start.pipeline
    modules = {
        "vae": pipe.vae.module(),
        "text_encoder": pipe.text_encoder.module(),
        "unet": pipe.unet.module(),
    }
    modules[mode] = start.trainable.module()
    frozen = {"vae": pipe.vae.params, "text_encoder": pipe.text_encoder.params}
    if mode == "controlnet":
        frozen["unet"] = pipe.unet.params
    ctx = StepContext(
        mode=mode,
        modules=modules,
        schedule=from_diffusers_config(pipe.scheduler_config),
        scaling_factor=pipe.vae.config.scaling_factor,
        optimizer=make_optimizer(cfg.optim),
        caption_dropout=0.1,
        empty_ids=pipe.tokenizer([""])[0],
    )
    raw = next(iter(dataset.batches(4, seed=0, condition="canny", resolution=32)))
    batch = {
        "pixels": raw["pixel_values"],
        "ids": pipe.tokenizer(raw["text"]),
        "cond": raw["conditioning_pixel_values"],
    }
    state = init_state(ctx, start.trainable.params, frozen)
    jitted, rates = jax.jit(functools.partial(train_step, ctx)), learning_rates(cfg.optim, 10)

    def step(state, batch, rng):  # as the trainer: the rate of the step the state is at
        return jitted(state, batch, rng, rates[int(state.step)])

    return step, state, batch


@pytest.mark.parametrize("mode", ["controlnet", "unet"])
def test_frozen_weights_stay_bit_identical_and_trained_ones_move(data, mode):
    step, state, batch = _context_and_state(data, mode)
    frozen_before = jax.tree_util.tree_map(np.array, state.frozen)
    params_before = jax.tree_util.tree_map(np.array, state.params)
    # Three steps: zero convs block every gradient upstream of them at step 1, and the condition
    # embedding's zero conv_out blocks its own inputs' gradient until step 3.
    for i in range(3):
        state, metrics = step(state, batch, jax.random.key(i))
        assert bool(metrics["finite"])
    for path, value in flatten(frozen_before).items():
        assert np.array_equal(value, np.asarray(flatten(state.frozen)[path])), path
    moved = [
        not np.array_equal(v, np.asarray(flatten(state.params)[k])) for k, v in flatten(params_before).items()
    ]
    assert all(moved), "every trained weight must get an update"
    assert int(state.step) == 3


def test_ema_warms_up_and_forgets_the_random_init():
    from controlsprint.training.step import ema_decay_at

    decays = np.asarray(ema_decay_at(0.999, np.arange(10_000)), np.float64)
    assert decays[0] == pytest.approx(0.1) and decays[90] == pytest.approx(0.91)
    assert decays.max() == pytest.approx(0.999) and np.all(np.diff(decays) >= 0)
    # the share of the initial weights left in the EMA after 900 steps: the product of the decays
    assert np.prod(decays[:900]) < 1e-6 < 0.999**900


def test_resume_of_a_finished_run_keeps_its_checkpoint_and_exports(cli, data, tmp_path):
    out = tmp_path / "finished"
    code, _, err = cli(*train_args(data, out, "run.steps=2", "run.export=false"))
    assert code == 0, err
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    # killed between the last checkpoint and the export: --resume has no step left, only the finish
    code, _, err = cli(*train_args(data, out, "run.steps=2"), "--resume")
    assert code == 0, err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["loss"] is None
    assert (out / "export" / "pipeline" / "model_index.json").is_file()


def test_controlnet_starts_as_a_copy_of_the_unet_encoder(data):
    step, state, _ = _context_and_state(data, "controlnet")
    unet = flatten(state.frozen["unet"])
    shared = [k for k in flatten(state.params) if k in unet]
    assert len(shared) > 20
    assert all(np.array_equal(np.asarray(flatten(state.params)[k]), np.asarray(unet[k])) for k in shared)
    # the zero convs are zero, so at step 0 the controlled model is the base model
    zero = flatten(state.params["controlnet_mid_block"])
    assert all(float(np.abs(np.asarray(v)).max()) == 0.0 for v in zero.values())


def test_loss_decreases_over_50_steps(cli, data, tmp_path):
    out = tmp_path / "learn"
    code, _, err = cli(
        *train_args(
            data, out, "run.steps=50", "model.mode=unet", "optim.learning_rate=2e-3", "run.export=false"
        )
    )
    assert code == 0, err
    losses = [h["loss"] for h in json.loads((out / "history.json").read_text())]
    assert len(losses) == 50
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (np.mean(losses[:10]), np.mean(losses[-10:]))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "run.stepz=3"], "unknown config key 'run.stepz'; did you mean 'run.steps'?"),
        (["--set", "run.batch_size=0"], "run.batch_size: must be >= 1"),
        (["--set", "data.path=/nonexistent/data"], "/nonexistent/data"),
        (["--set", "model.condition=depth"], "condition 'depth' is not in"),
        (["--set", "run.batch_size=6", "--set", "optim.grad_accum=4"], "must divide by optim.grad_accum"),
        (["--set", "model.mode=painting"], "must be one of controlnet, unet, vae"),
        (["--set", "model.train_text_encoder=true"], "model.train_text_encoder: must be false unless"),
        (["--set", "model.schedule=zero-snr-v"], 'model.schedule: must be "base" unless'),
        (
            ["--set", "model.mode=vae", "--set", "optim.foreground_weight=4"],
            "optim.foreground_weight: must be 1",
        ),
        (
            ["--set", "optim.foreground_weight=4", "--set", "data.foreground_condition=depth"],
            "condition 'depth'",
        ),
    ],
)
def test_bad_config_and_data_are_one_line_errors(cli, data, tmp_path, extra, message):
    code, _, err = cli(*train_args(data, tmp_path / "bad"), *extra)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_unet_run_trains_its_text_encoder_and_writes_the_zero_snr_schedule(cli, data, tmp_path):
    """model.train_text_encoder: the exported text encoder moved from the base's (a fresh one here) and
    is what the exported pipeline encodes with; model.schedule=zero-snr-v lands in its scheduler config."""
    from controlsprint.schedulers import from_diffusers_config
    from controlsprint.schedulers.schedule import alphas_cumprod

    runs = {}
    for trains in ("false", "true"):
        out = tmp_path / trains
        code, _, err = cli(
            *train_args(
                data,
                out,
                "run.steps=3",
                "model.mode=unet",
                "model.schedule=zero-snr-v",
                f"model.train_text_encoder={trains}",
            )
        )
        assert code == 0, err
        runs[trains] = load_pipeline(out / "export" / "pipeline", with_controlnets=False)
    frozen, trained = (flatten(runs[k].text_encoder.params) for k in ("false", "true"))
    assert frozen.keys() == trained.keys()
    moved = [k for k in frozen if not np.array_equal(np.asarray(frozen[k]), np.asarray(trained[k]))]
    assert len(moved) > len(frozen) // 2, "the text encoder's weights should train"
    schedule = from_diffusers_config(runs["true"].scheduler_config)
    assert schedule.prediction_type == "v_prediction" and schedule.timestep_spacing == "trailing"
    assert schedule.rescale_betas_zero_snr and alphas_cumprod(schedule)[-1] == 0.0


def test_existing_checkpoints_are_not_overwritten_without_resume(cli, data, tmp_path):
    out = tmp_path / "keep"
    assert cli(*train_args(data, out, "run.steps=1", "run.export=false"))[0] == 0
    code, _, err = cli(*train_args(data, out, "run.steps=2", "run.export=false"))
    assert code == 2 and "pass --resume" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["1"]


def test_divergence_stops_with_the_last_good_checkpoint(cli, data, tmp_path):
    out = tmp_path / "nan"
    code, _, err = cli(
        *train_args(
            data,
            out,
            "run.steps=30",
            "optim.learning_rate=1e12",
            "optim.grad_clip=0",
            "run.checkpoint_every=1",
        )
    )
    assert code == 2 and "loss became" in err and "last good checkpoint" in err
    from controlsprint.training.checkpoints import Checkpointer

    latest = Checkpointer(out / "checkpoints", keep=2, asynchronous=False).latest_step()
    assert latest is not None
    state_dir = out / "checkpoints" / str(latest)
    assert state_dir.is_dir()


def test_sigterm_saves_and_resume_finishes(data, tmp_path):
    out = tmp_path / "term"
    proc = run_train_process(train_args(data, out, "run.steps=400", "run.export=false"))
    deadline = time.time() + 300
    while (
        time.time() < deadline
        and not (out / "history.json").exists()
        and not list((out / "tensorboard").glob("*"))
    ):
        time.sleep(0.5)
    time.sleep(3)  # some steps in
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved, continue with --resume" in err
    saved = max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert 0 < saved < 400
    resumed = run_train_process(
        [*train_args(data, out, "run.steps=" + str(saved + 2), "run.export=false"), "--resume"]
    )
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert (out / "checkpoints" / str(saved + 2)).is_dir()


def test_export_params_are_loadable(data, tmp_path, cli):
    out = tmp_path / "exp"
    assert cli(*train_args(data, out, "run.steps=2"))[0] == 0
    params = exported_params(out)
    assert params and all(np.isfinite(v).all() for v in params.values())


def test_foreground_weight_reaches_the_step_of_a_unet_run(cli, data, tmp_path):
    """Same seed, same batches, noise and timesteps: only the loss's weighting differs at step 1."""
    losses = {}
    for weight in (1, 5):
        out = tmp_path / f"w{weight}"
        extra = ("run.steps=1", "model.mode=unet", "run.export=false", f"optim.foreground_weight={weight}")
        code, _, err = cli(*train_args(data, out, *extra))
        assert code == 0, err
        losses[weight] = json.loads((out / "history.json").read_text())[0]["loss"]
    assert losses[5] != pytest.approx(losses[1], rel=1e-4)
