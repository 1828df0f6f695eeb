"""Embedded default model, stage 'unet' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-unet
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("unet")
