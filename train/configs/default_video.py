"""Embedded default model, stage 'video': temporal layers for the text + hint image -> clip demo
(see controlsprint/training/presets.py and docs/video.md).

controlsprint train default-video
"""

from controlsprint.training.presets import embedded_stage


def get_config():
    return embedded_stage("video")
