"""Embedded default model, stage 'decoder' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-decoder
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("decoder")
