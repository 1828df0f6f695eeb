"""Embedded default model, stage 'vae' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-vae
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("vae")
