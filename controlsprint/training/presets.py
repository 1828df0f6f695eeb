"""The embedded default model's training stages as configs (train/configs/default_*.py call these).

Rebuild everything with `train/build_default_model.sh`; docs/embedded-model.md has the commands, the
measured times and the eval figures. Stage order: vae -> unet -> the four ControlNets (independent).
"""

from __future__ import annotations

from controlsprint.training.config import DataSection, ModelSection, OptimSection, RunSection, TrainConfig

DATA = {
    "mixed": "data/default/mixed",
    "shapes": "data/default/shapes",
    "hands": "data/default/hands",
    "motion": "data/default/motion",
}
RUNS = "runs/default"
CONTROLNET_DATA = {"canny": "shapes", "segment": "shapes", "gray": "shapes", "hands": "hands"}

# steps per stage: the whole build takes about two hours of 2 CPU cores (measured: 134 min, one stage
# slowed by a test run beside it). Canny and gray get 1500 steps: at 450 their evals were F1 0.16 and
# 18.1 dB, at 1500 0.30 and 19.1 dB, the largest gains per minute measured (docs/embedded-model.md)
STEPS = {"vae": 1500, "unet": 1500, "canny": 1500, "segment": 450, "gray": 1500, "hands": 450, "video": 600}


def _run(stage: str, steps: int, batch: int, **extra) -> RunSection:
    return RunSection(
        output_dir=f"{RUNS}/{stage}",
        steps=steps,
        batch_size=batch,
        log_every=25,
        checkpoint_every=500,
        validate_every=0,
        validation_samples=4,
        validation_steps=20,
        **extra,
    )


def embedded_stage(stage: str) -> TrainConfig:
    if stage == "vae":
        return TrainConfig(
            name="default-vae",
            model=ModelSection(mode="vae", architecture="embedded", seed=0),
            # 64 px crops of 128 px scenes: the VAE is convolutional, crops teach it the same edges at 1/4 cost
            data=DataSection(path=DATA["mixed"], resolution=128, crop=64),
            optim=OptimSection(learning_rate=2e-3, warmup_steps=100, schedule="cosine"),
            run=_run("vae", STEPS["vae"], 16),
        )
    if stage == "unet":
        return TrainConfig(
            name="default-unet",
            model=ModelSection(mode="unet", base=f"{RUNS}/vae/export/pipeline"),
            data=DataSection(path=DATA["mixed"], resolution=128, caption_dropout=0.1),
            optim=OptimSection(learning_rate=1e-3, warmup_steps=200, schedule="cosine", ema_decay=0.999),
            run=_run("unet", STEPS["unet"], 32),
        )
    if stage in CONTROLNET_DATA:
        return TrainConfig(
            name=f"default-{stage}",
            model=ModelSection(mode="controlnet", base=f"{RUNS}/unet/export/pipeline", condition=stage),
            data=DataSection(path=DATA[CONTROLNET_DATA[stage]], resolution=128, caption_dropout=0.1),
            optim=OptimSection(learning_rate=5e-4, warmup_steps=50, schedule="cosine"),
            run=_run(stage, STEPS[stage], 16),
        )
    if stage == "video":  # the temporal layers of the embedded video model (issue 11), image parts frozen
        return TrainConfig(
            name="default-video",
            model=ModelSection(mode="video", base=f"{RUNS}/unet/export/pipeline", temporal_heads=8),
            data=DataSection(path=DATA["motion"], resolution=128, caption_dropout=0.1, hint_dropout=0.1),
            optim=OptimSection(learning_rate=5e-4, warmup_steps=50, schedule="cosine"),
            run=_run("video", STEPS["video"], 4),
        )
    raise ValueError(f"unknown stage {stage}")
