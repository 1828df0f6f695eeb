"""The embedded default model's training stages as configs (train/configs/default_*.py call these).

Rebuild everything with `train/build_default_model.sh`; docs/embedded-model.md has the commands, the
measured times and the eval figures. Stage order: vae -> unet -> the four ControlNets and the decoder
fine-tune (independent of each other: the decoder's frozen encoder keeps the latents they train on).
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

# steps per stage. The image model (vae, unet, then the ControlNets and the decoder fine-tune in two
# one-core lanes) took 75 minutes on 2 CPU cores in the sixteenth build, over the 60 aimed at (VAE 828 s,
# UNet 2012 s on a slow day, 1707 s on a good one; lanes 1656 s: docs/embedded-model.md). The sixteenth
# build doubles the decoder fine-tune (600 -> 1200 steps: canny F1 through the VAE 0.77 -> 0.85, under
# control 0.70 -> 0.79) and pays for its lane time with segment (600 -> 470 steps: mIoU 0.64, 0.6 is
# the goal) and gray (300 -> 130: 25.0 dB, 20 is the goal).
STEPS = {
    "vae": 1500,
    "unet": 1500,
    "canny": 1000,
    "segment": 470,
    "gray": 130,
    "hands": 150,
    "decoder": 1200,
    "video": 600,
}
# The stages after the UNet, in the two one-core lanes of the build script (train/build_default_model.sh),
# in the order each lane runs them. canny, segment and gray share `shapes` and one on-disk encoding pass
# (ENCODINGS): canny makes it after hands; segment, after the decoder, and gray read it (their 470 and
# 130 steps are too few to pay for a pass of their own, but a stored one costs them nothing).
LANES = (("hands", "canny"), ("decoder", "segment", "gray"))
ENCODINGS = f"{RUNS}/encodings"
# canny at twice the others' learning rate (eleventh build): in its 1000 steps it then steers firmly
# (calibration F1 0.532 -> 0.664 at gain 1; eval 0.627 -> 0.687 with its gain), where at 5e-4 it had
# only begun to (docs/embedded-model.md)
CONTROLNET_LEARNING_RATES = {"canny": 1e-3}
# The conditioning scale baked into each ControlNet's output convolutions at export
# (`controlsprint export --controlnet-gain`), so that scale 1, every command's default, is the scale
# that serves it best: each the best of 1, 1.5, ..., 4 for its metric on calibration scenes (seed 20000,
# not eval's 10000: `python bench/controlnet_gain.py`, docs/embedded-model.md). Briefly trained
# ControlNets steer too softly at 1 (their zero convolutions have not grown to full strength).
GAINS = {"canny": 2.0, "segment": 1.5, "gray": 3.5, "hands": 1.5}
# The classifier-free guidance scale recorded in the export (`controlsprint export --guidance-scale`), what
# generate, eval and the image demos use when none is given. Chosen on the calibration scenes with the
# gains above (`python bench/guidance_sweep.py`): lower guidance pulls the pictures less off their
# control (canny F1 0.618 at diffusers' 7.5, 0.689 at 5, 0.752 at 2.5, 0.756 at 2; segment and gray
# also best at 2-2.5), and 2.5 keeps more of the caption's colours than 2 (canny's 38 % against 31 %).
GUIDANCE = 2.5


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
    if stage == "decoder":  # sharper pictures from the same latents: the encoder stays frozen
        return TrainConfig(
            name="default-decoder",
            model=ModelSection(mode="vae", base=f"{RUNS}/vae/export/pipeline", vae_part="decoder", seed=0),
            data=DataSection(path=DATA["mixed"], resolution=128, crop=64),
            optim=OptimSection(learning_rate=2e-3, warmup_steps=100, schedule="cosine"),
            run=_run("decoder", STEPS["decoder"], 16),
        )
    if stage == "unet":
        return TrainConfig(
            name="default-unet",
            # Zero-terminal-SNR v-prediction with the text encoder trained alongside (eighth build): the
            # backgrounds take the caption's colour, and under control the shapes come out sharper than
            # the epsilon recipe's (canny F1 0.42 vs 0.32; docs/embedded-model.md)
            model=ModelSection(
                mode="unet",
                base=f"{RUNS}/vae/export/pipeline",
                train_text_encoder=True,
                schedule="zero-snr-v",
            ),
            # Encoded every step: with the text encoder training only the VAE latents could be cached,
            # and their pass (174 s for 16,000 rows) bought no faster steps (1.15 s either way on 2
            # cores, same losses; docs/embedded-model.md, 'Towards the hour')
            data=DataSection(path=DATA["mixed"], resolution=128, caption_dropout=0.1, cache_encodings=False),
            optim=OptimSection(learning_rate=1e-3, warmup_steps=200, schedule="cosine", ema_decay=0.999),
            run=_run("unet", STEPS["unet"], 32),
        )
    if stage in CONTROLNET_DATA:
        return TrainConfig(
            name=f"default-{stage}",
            model=ModelSection(mode="controlnet", base=f"{RUNS}/unet/export/pipeline", condition=stage),
            data=DataSection(
                path=DATA[CONTROLNET_DATA[stage]],
                resolution=128,
                caption_dropout=0.1,
                encodings_dir=ENCODINGS,
            ),
            optim=OptimSection(
                learning_rate=CONTROLNET_LEARNING_RATES.get(stage, 5e-4), warmup_steps=50, schedule="cosine"
            ),
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
