"""bench/colour_binding.py's scoring: right on the true pictures, wrong on a repainted or empty one."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
colour_binding = pytest.importorskip("colour_binding")


def _solid_scenes(count: int = 8):
    from controlsprint.data.synth import render_scene, row_seed

    scenes = (render_scene("shapes", row_seed(10_000, i), 128) for i in range(40))
    return [s for s in scenes if s.objects[0]["gradient"] is None][:count]


def test_true_pictures_score_right_on_both_questions():
    scenes = _solid_scenes()
    assert len(scenes) == 8
    for scene in scenes:
        assert colour_binding.scene_scores(scene, scene.image) == (True, True), scene.caption


def test_a_repainted_background_and_a_blank_picture_score_wrong():
    from controlsprint.data.synth.palette import NAMED_COLOURS

    scene = _solid_scenes(1)[0]
    other = next(n for n in NAMED_COLOURS if n not in scene.caption)
    repainted = scene.image.copy()
    background = np.all(repainted == repainted[0, 0], axis=-1)
    repainted[background] = NAMED_COLOURS[other]
    assert colour_binding.scene_scores(scene, repainted)[0] is False
    blank = np.full_like(scene.image, 128)
    assert colour_binding.scene_scores(scene, blank)[1] is False
