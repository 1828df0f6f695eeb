"""Embedded default model, stage 'canny' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-canny
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("canny")
