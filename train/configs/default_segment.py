"""Embedded default model, stage 'segment' (see controlsprint/training/presets.py and docs/embedded-model.md).

controlsprint train default-segment
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("segment")
