"""`face`: MediaPipe Face Mesh (468 landmarks, 478 with irises) drawn as coloured contours on black.

The drawing keeps what a face ControlNet needs and nothing busier: the face oval, eyebrows, eyes, lips
and irises, each part in its own colour (left and right differ, so the head's turn is visible).
`ConditionResult.landmarks`: one {"landmarks": [468 or 478 records]} per face.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from controlsprint.conditions.base import ConditionResult
from controlsprint.conditions.drawing import black_canvas, draw_paths, edge_chains, fixed_points, stroke_width
from controlsprint.conditions.landmarks import (
    MediaPipeExtractor,
    landmark_records,
    landmark_values,
    pixel_coordinates,
)

# (name of the connection set in mediapipe's face_mesh_connections, colour), drawn in this order.
FACE_PARTS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("FACEMESH_FACE_OVAL", (255, 255, 255)),
    ("FACEMESH_LEFT_EYEBROW", (0, 255, 0)),
    ("FACEMESH_RIGHT_EYEBROW", (255, 128, 0)),
    ("FACEMESH_LEFT_EYE", (0, 255, 255)),
    ("FACEMESH_RIGHT_EYE", (255, 0, 255)),
    ("FACEMESH_LIPS", (255, 48, 48)),
    ("FACEMESH_LEFT_IRIS", (64, 160, 255)),
    ("FACEMESH_RIGHT_IRIS", (255, 220, 0)),
)


class FaceExtractor(MediaPipeExtractor):
    name = "face"

    def _build_graph(self) -> Any:
        import mediapipe as mp

        self._parts = face_part_paths()
        return mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=self.options.max_faces,
            refine_landmarks=self.options.refine_landmarks,
            min_detection_confidence=self.options.min_confidence,
        )

    @staticmethod
    def _detected(found: Any) -> bool:
        return bool(found.multi_face_landmarks)

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        found = self._process(rgb)
        values = [landmark_values(marks.landmark) for marks in found.multi_face_landmarks or []]
        image = draw_faces([pixel_coordinates(v, size) for v in values], size, self._parts)
        return ConditionResult(
            image, landmarks=lambda: [{"landmarks": landmark_records(v, size)} for v in values]
        )


def face_part_paths() -> tuple[tuple[tuple[np.ndarray, ...], int, tuple[int, int, int]], ...]:
    """Per face part: its contours as landmark-index paths, the highest index used, and its colour."""
    from mediapipe.python.solutions import face_mesh_connections

    parts = []
    for part, colour in FACE_PARTS:
        edges = sorted(getattr(face_mesh_connections, part))
        parts.append((edge_chains(edges), max(max(edge) for edge in edges), colour))
    return tuple(parts)


def draw_faces(
    faces: list[np.ndarray],
    size: tuple[int, int],
    parts: tuple[tuple[tuple[np.ndarray, ...], int, tuple[int, int, int]], ...],
) -> np.ndarray:
    """Face contours of faces given as (468 or 478, 2) pixel coordinates each (Face Mesh gives every point)."""
    canvas = black_canvas(size)
    width = stroke_width(size, per_pixels=256.0)
    for points in faces:
        fixed, _ = fixed_points(points)  # once per face, shared by its parts
        for paths, highest, colour in parts:
            if highest < len(points):  # skips the iris parts without refine_landmarks
                draw_paths(canvas, fixed, paths, colour, width)
    return canvas
