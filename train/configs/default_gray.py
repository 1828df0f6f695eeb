"""Embedded default model, stage 'gray' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-gray
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("gray")
