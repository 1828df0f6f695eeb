"""`pose`: MediaPipe Pose (33 landmarks, one person) drawn as an OpenPose-style body skeleton on black.

ControlNet's pose models were trained on OpenPose's 18-keypoint body drawing, so the 33 MediaPipe
landmarks are mapped onto those 18 keypoints (the neck is the midpoint of the shoulders) and drawn the
OpenPose way: limbs in a hue sweep at 60 % brightness, keypoints as full-brightness dots. Keypoints
whose visibility is below `min_visibility` are left out, with their limbs.
`ConditionResult.landmarks`: [{"landmarks": [33 records with name and visibility]}], or [] if no person.
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
    scale_colour,
    stroke_width,
)
from controlsprint.conditions.landmarks import (
    MediaPipeExtractor,
    landmark_records,
    landmark_values,
    pixel_coordinates,
)

# OpenPose body keypoints (COCO order) as MediaPipe landmark indices; "neck" has no MediaPipe landmark.
OPENPOSE_FROM_MEDIAPIPE: tuple[int | str, ...] = (
    0,  # nose
    "neck",
    12,  # right shoulder
    14,  # right elbow
    16,  # right wrist
    11,  # left shoulder
    13,  # left elbow
    15,  # left wrist
    24,  # right hip
    26,  # right knee
    28,  # right ankle
    23,  # left hip
    25,  # left knee
    27,  # left ankle
    5,  # right eye
    2,  # left eye
    8,  # right ear
    7,  # left ear
)
# OpenPose's limbs between those keypoints, in its drawing order.
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
KEYPOINT_COLOURS = hue_sweep(len(OPENPOSE_FROM_MEDIAPIPE))
LIMB_COLOURS = tuple(scale_colour(colour, 0.6) for colour in KEYPOINT_COLOURS)
_LEFT_SHOULDER, _RIGHT_SHOULDER = 11, 12


class PoseExtractor(MediaPipeExtractor):
    name = "pose"

    def _build_graph(self) -> Any:
        import mediapipe as mp

        self._names = tuple(mark.name.lower() for mark in mp.solutions.pose.PoseLandmark)
        # model_complexity=1 is the only pose landmark model inside the mediapipe wheel; 0 and 2
        # would be downloaded on first use, which controlsprint never does.
        return mp.solutions.pose.Pose(
            static_image_mode=True,
            model_complexity=1,
            enable_segmentation=False,
            min_detection_confidence=self.options.min_confidence,
        )

    @staticmethod
    def _detected(found: Any) -> bool:
        return bool(found.pose_landmarks)

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        found = self._process(rgb)
        if found.pose_landmarks is None:
            return ConditionResult(black_canvas(size), landmarks=[])
        values = landmark_values(found.pose_landmarks.landmark, with_visibility=True)
        keypoints = openpose_keypoints(
            pixel_coordinates(values, size), values[:, 3], self.options.min_visibility
        )
        return ConditionResult(
            draw_openpose_body(keypoints, size),
            landmarks=lambda: [{"landmarks": landmark_records(values, size, self._names)}],
        )


def openpose_keypoints(
    pixels: np.ndarray, visibility: np.ndarray, min_visibility: float
) -> list[tuple[float, float] | None]:
    """The 18 OpenPose keypoints in pixels (None where not visible enough) from the 33 MediaPipe ones."""

    def visible(index: int) -> tuple[float, float] | None:
        if visibility[index] < min_visibility:
            return None
        return float(pixels[index, 0]), float(pixels[index, 1])

    keypoints = []
    for source in OPENPOSE_FROM_MEDIAPIPE:
        if source == "neck":
            left, right = visible(_LEFT_SHOULDER), visible(_RIGHT_SHOULDER)
            keypoints.append(None if left is None or right is None else _midpoint(left, right))
        else:
            keypoints.append(visible(source))
    return keypoints


def _midpoint(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)


def draw_openpose_body(keypoints: list[tuple[float, float] | None], size: tuple[int, int]) -> np.ndarray:
    canvas = black_canvas(size)
    width = stroke_width(size, per_pixels=128.0)
    draw_bones(canvas, keypoints, OPENPOSE_LIMBS, LIMB_COLOURS, width)
    draw_joints(canvas, keypoints, KEYPOINT_COLOURS, width)
    return canvas
