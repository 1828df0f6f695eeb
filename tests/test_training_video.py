"""Training mode "video" (train/configs/tiny_video.py) on `synth --kinds motion` clips: the image parts stay
frozen, the temporal layers and hint input learn, the export is a video pipeline that generates, and
config/data mistakes are one-line errors.

The default tests share one short run (3 steps of batch 2 on 3-frame 64 px clips); most of its cost is
compiling the video UNet's training step. The loss test compiles its own step and is marked slow.
"""

from __future__ import annotations

import functools
import json

import jax
import numpy as np
import pytest

from controlsprint.cli.train import load_train_config
from controlsprint.errors import UserError
from controlsprint.models.convert import flatten
from controlsprint.models.pipeline import load_pipeline
from tests.training_helpers import make_dataset

FRAMES, SIZE = 3, 64
RUN = [
    "run.steps=3",
    "run.batch_size=2",
    "run.log_every=1",
    "run.checkpoint_every=100",
    "run.async_checkpoints=false",
    "run.validation_samples=1",
    "run.validation_steps=2",
    "optim.learning_rate=1e-3",
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    from controlsprint.cli.main import main

    folder = tmp_path_factory.mktemp("motion") / "clips"
    args = ["synth", "--kinds", "motion", "--frames", FRAMES, "--size", SIZE, "--num", 8, "--no-progress"]
    assert main([str(a) for a in [*args, "--out", folder]]) == 0
    return folder


def _train_args(data, out, *extra: str) -> list[str]:
    sets = [f"data.path={data}", f"run.output_dir={out}", *RUN, *extra]
    return ["train", "tiny_video", "--no-progress", *[a for s in sets for a in ("--set", s)]]


def _starting_point(data, *extra: str):
    """What the trainer starts from for this config (a fresh pipeline is a pure function of the seed)."""
    from controlsprint.data.reader import ShardedDataset
    from controlsprint.training.models import starting_point

    cfg = load_train_config("tiny_video", [f"data.path={data}", *extra])
    dataset = ShardedDataset(data)
    return starting_point(cfg, dataset.read_rows(np.arange(len(dataset)), ["text"])["text"])


@pytest.fixture(scope="module")
def run(clips, tmp_path_factory):
    from controlsprint.cli.main import main

    out = tmp_path_factory.mktemp("video-run") / "run"
    assert main(_train_args(clips, out)) == 0
    return out


def _flat(tree) -> dict:
    return {k: np.asarray(v) for k, v in flatten(tree).items()}


def test_run_writes_summary_validation_and_a_video_export(run):
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and np.isfinite(summary["loss"])
    scores = summary["validation"]
    assert {"first_frame_psnr", "temporal_diff", "temporal_diff_truth"} <= scores.keys()
    assert all(np.isfinite(v) for v in scores.values())
    assert (run / "validation" / "step_000003.png").is_file()
    assert len(json.loads((run / "history.json").read_text())) == 3
    export = run / "export" / "pipeline"
    assert (export / "temporal" / "config.json").is_file()
    assert json.loads((export / "controlsprint.json").read_text())["training"]["config"] == "tiny_video"


def test_validation_grid_holds_truth_and_generated_frames(run):
    from PIL import Image

    # one validation clip: a row of true frames over a row of generated ones, 2 px gutters
    grid = Image.open(run / "validation" / "step_000003.png")
    assert grid.size == (FRAMES * (SIZE + 2) - 2, 2 * (SIZE + 2) - 2)


def test_image_parts_are_exported_unchanged_and_temporal_layers_learned(run, clips):
    start = _starting_point(clips)
    exported = load_pipeline(run / "export" / "pipeline")
    for name in ("unet", "vae", "text_encoder"):
        before, after = _flat(getattr(start.pipeline, name).params), _flat(getattr(exported, name).params)
        assert before.keys() == after.keys()
        assert all(np.array_equal(before[k], after[k]) for k in before), name
    assert exported.temporal is not None and exported.temporal.config == start.trainable.config
    before, after = _flat(start.trainable.params), _flat(exported.temporal.params)
    assert before.keys() == after.keys() and {k[0] for k in before} == {"temporal", "hint_conv_in"}
    unmoved = [k for k in before if np.array_equal(before[k], after[k])]
    assert not unmoved, f"temporal weights not trained: {unmoved[:3]}"
    # the zero-initialised parts (output projections, hint conv) are zero no longer
    assert np.abs(after[("hint_conv_in", "kernel")]).max() > 0


def test_export_loads_and_generates_a_clip(run):
    from controlsprint.inference import InferenceCore, make_request

    core = InferenceCore(load_pipeline(run / "export" / "pipeline"))
    assert core.has_video
    hint = np.zeros((SIZE, SIZE, 3), np.uint8)
    hint[16:40, 8:32] = (230, 40, 40)
    # the validator's settings (2 steps, guidance 5): its compiled program serves here too
    request = make_request(
        "a red square moving to the right", frames=FRAMES, hint_image=hint, steps=2, guidance=5.0
    )
    clip = core.generate(request)
    assert clip.shape == (1, FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert core.generate(request).tobytes() == clip.tobytes()


def test_training_continues_the_temporal_layers_of_its_base(run, clips):
    """A base that already has temporal layers is trained further, not re-initialised."""
    export = run / "export" / "pipeline"
    start = _starting_point(clips, f"model.base={export}")
    assert start.trainable.kind == "temporal"
    exported = load_pipeline(export).temporal
    assert start.trainable.config == exported.config
    trained, fresh = _flat(exported.params), _flat(_starting_point(clips).trainable.params)
    continued = _flat(start.trainable.params)
    assert all(np.array_equal(continued[k], trained[k]) for k in trained)
    assert not all(np.array_equal(continued[k], fresh[k]) for k in fresh)


# -- errors -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("stills") / "shapes", rows=4)


def test_video_mode_on_a_dataset_without_clips(cli, stills, tmp_path):
    code, _, err = cli(*_train_args(stills, tmp_path / "run"))
    assert code == 2 and err.count("\n") == 1, err
    assert f"data.path {stills}: video mode needs clips" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("data.crop=32", "data.crop: must be 0 in video mode"),
        ("data.hint_dropout=1.5", "data.hint_dropout: must be in [0, 1]"),
        ("model.temporal_heads=3", "temporal_attention_heads=3"),
        ("model.temporal_kernel=2", "temporal_kernel_size=2"),
    ],
)
def test_bad_video_settings_are_one_line_errors(cli, clips, tmp_path, setting, message):
    code, _, err = cli(*_train_args(clips, tmp_path / "run", setting))
    assert code == 2 and err.count("\n") == 1, err
    assert message in err


def test_crop_is_refused_by_the_config_check(clips):
    with pytest.raises(UserError, match="data.crop"):
        load_train_config("tiny_video", [f"data.path={clips}", "data.crop=32"])


# -- learning -----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch_and_image_parts_stay_frozen(clips):
    """30 steps on one batch with one noise draw: the temporal layers alone can fit it."""
    from controlsprint.data.reader import ShardedDataset
    from controlsprint.schedulers import from_diffusers_config
    from controlsprint.training.optim import learning_rates, make_optimizer
    from controlsprint.training.step import StepContext, init_state, train_step

    start = _starting_point(clips, "optim.learning_rate=1e-3")
    pipe = start.pipeline
    cfg = load_train_config("tiny_video", [f"data.path={clips}", "optim.learning_rate=1e-3"])
    ctx = StepContext(
        mode="video",
        modules={
            "vae": pipe.vae.module(),
            "text_encoder": pipe.text_encoder.module(),
            "unet": pipe.unet.module(),
            "video": start.trainable.module(),
        },
        schedule=from_diffusers_config(pipe.scheduler_config),
        scaling_factor=pipe.vae.config.scaling_factor,
        optimizer=make_optimizer(cfg.optim),
        caption_dropout=0.0,
        empty_ids=pipe.tokenizer([""])[0],
        hint_dropout=0.0,
    )
    raw = next(iter(ShardedDataset(clips).batches(2, seed=0, resolution=SIZE)))
    batch = {"frames": raw["frames"], "ids": pipe.tokenizer(raw["text"])}
    assert batch["frames"].shape == (2, FRAMES, SIZE, SIZE, 3)
    frozen = {"vae": pipe.vae.params, "text_encoder": pipe.text_encoder.params, "unet": pipe.unet.params}
    state = init_state(ctx, start.trainable.params, frozen)
    frozen_before, params_before = _flat(state.frozen), _flat(state.params)
    step, rates = jax.jit(functools.partial(train_step, ctx)), learning_rates(cfg.optim, 30)
    losses = []
    for i in range(30):  # the same noise and timesteps each step
        state, metrics = step(state, batch, jax.random.key(0), rates[i])
        assert bool(metrics["finite"])
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5]), losses
    frozen_after, params_after = _flat(state.frozen), _flat(state.params)
    assert all(np.array_equal(frozen_before[k], frozen_after[k]) for k in frozen_before)
    assert all(not np.array_equal(params_before[k], params_after[k]) for k in params_before)
