"""Tiny video run on CPU, for tests and a first look (under a minute on 2 cores).

    controlsprint synth --out data/tiny-motion --num 64 --size 64 --kinds motion --frames 4
    controlsprint train tiny_video --set data.path=data/tiny-motion

A fresh tiny pipeline (random image parts, frozen) with temporal layers and the hint input trained on
4-frame clips of 64 px; give `model.base` to train temporal layers for an existing pipeline instead.
"""

from controlsprint.training.config import DataSection, ModelSection, RunSection, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="tiny_video",
        model=ModelSection(mode="video", architecture="tiny", temporal_heads=2),
        data=DataSection(path="data/tiny-motion", resolution=64, caption_dropout=0.1, hint_dropout=0.1),
        run=RunSection(
            output_dir="runs/tiny-video",
            steps=20,
            batch_size=2,
            log_every=5,
            checkpoint_every=10,
            validation_samples=2,
            validation_steps=4,
        ),
    )
