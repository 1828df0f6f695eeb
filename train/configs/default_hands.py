"""Embedded default model, stage 'hands' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-hands
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("hands")
