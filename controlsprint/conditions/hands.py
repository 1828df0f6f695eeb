"""`hands`: MediaPipe Hands (21 landmarks per hand) drawn as the OpenPose-style hand skeleton on black.

Each finger is a chain from the wrist, and the 20 bones take evenly spaced hues, so every finger has
its own colour range; joints are blue dots. `ConditionResult.landmarks` lists one record per hand:
{"handedness": "Left"|"Right", "score": float, "landmarks": [21 records, see landmarks.py]}.

Handedness: MediaPipe labels hands as if the photo were mirrored (a selfie camera). Photos usually are
not, so by default the label is swapped to name the person's real hand; `mirrored=True` keeps
MediaPipe's label for mirrored input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controlsprint.conditions.base import ConditionResult
from controlsprint.conditions.drawing import (
    black_canvas,
    draw_bones,
    draw_joints,
    hue_sweep,
    stroke_width,
)
from controlsprint.conditions.landmarks import (
    MediaPipeExtractor,
    landmark_records,
    landmark_values,
    pixel_coordinates,
)

# Wrist is landmark 0; finger f (thumb .. pinky) is landmarks 4f+1 .. 4f+4, base to tip.
HAND_BONES: tuple[tuple[int, int], ...] = tuple(
    bone
    for first in range(1, 21, 4)
    for bone in ((0, first), (first, first + 1), (first + 1, first + 2), (first + 2, first + 3))
)
BONE_COLOURS = hue_sweep(len(HAND_BONES))
JOINT_COLOUR = ((0, 0, 255),)
_SWAP = {"Left": "Right", "Right": "Left"}


class HandsExtractor(MediaPipeExtractor):
    name = "hands"

    def _build_graph(self) -> Any:
        import mediapipe as mp

        self._names = tuple(mark.name.lower() for mark in mp.solutions.hands.HandLandmark)
        return mp.solutions.hands.Hands(
            static_image_mode=True,
            max_num_hands=self.options.max_hands,
            model_complexity=self.options.model_complexity,
            min_detection_confidence=self.options.min_confidence,
        )

    @staticmethod
    def _detected(found: Any) -> bool:
        return bool(found.multi_hand_landmarks)

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        found = self._process(rgb)
        detections = [
            (landmark_values(marks.landmark), handedness.classification[0])
            for marks, handedness in zip(
                found.multi_hand_landmarks or [], found.multi_handedness or [], strict=True
            )
        ]
        image = draw_hands([pixel_coordinates(values, size) for values, _ in detections], size)

        def records() -> list[dict]:
            return [
                {
                    "handedness": label.label
                    if self.options.mirrored
                    else _SWAP.get(label.label, label.label),
                    "score": round(float(label.score), 4),
                    "landmarks": landmark_records(values, size, self._names),
                }
                for values, label in detections
            ]

        return ConditionResult(image, landmarks=records)


def draw_hands(hands: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The skeletons of hands given as (21, 2) pixel coordinates each."""
    canvas = black_canvas(size)
    width = stroke_width(size)
    for points in hands:
        draw_bones(canvas, points, HAND_BONES, BONE_COLOURS, width)
        draw_joints(canvas, points, JOINT_COLOUR, width + 1)
    return canvas
