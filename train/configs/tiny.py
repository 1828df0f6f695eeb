"""Tiny ControlNet run on CPU, for tests and a first look (about a minute on 2 cores).

    controlsprint synth --out data/tiny --num 256 --size 64
    controlsprint train tiny --set data.path=data/tiny

A fresh tiny pipeline (random VAE/UNet/text encoder, tokenizer from the captions) with a canny
ControlNet copied from the UNet's encoder; 64 px images.
"""

from controlsprint.training.config import DataSection, ModelSection, RunSection, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        name="tiny",
        model=ModelSection(mode="controlnet", architecture="tiny", condition="canny"),
        data=DataSection(path="data/tiny", resolution=64, caption_dropout=0.1),
        run=RunSection(
            output_dir="runs/tiny",
            steps=20,
            batch_size=4,
            log_every=5,
            checkpoint_every=10,
            validation_samples=2,
            validation_steps=4,
        ),
    )
