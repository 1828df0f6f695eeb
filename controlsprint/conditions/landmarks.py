"""MediaPipe plumbing shared by `hands`, `pose` and `face`: the lazy graph and landmark records.

Landmark records are JSON-ready dicts:
  {"x", "y", "z"}: MediaPipe's normalised coordinates (x, y in [0, 1] across the image width and height
                   when inside the image, possibly a little outside; z relative depth, same scale as x);
  {"px", "py"}:   the same point in pixels of the condition image (x * width, y * height);
  "name" (hands, pose) and "visibility" (pose) where MediaPipe defines them.
Values are rounded (5 decimals normalised, 2 in pixels) to keep the JSON small and stable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from controlsprint.conditions.base import Extractor


def landmark_records(
    landmarks: Sequence[Any],
    size: tuple[int, int],
    names: Sequence[str] | None = None,
    with_visibility: bool = False,
) -> list[dict]:
    height, width = size
    records = []
    for index, mark in enumerate(landmarks):
        record: dict = {}
        if names is not None:
            record["name"] = names[index]
        record.update(
            x=round(float(mark.x), 5),
            y=round(float(mark.y), 5),
            z=round(float(mark.z), 5),
            px=round(float(mark.x) * width, 2),
            py=round(float(mark.y) * height, 2),
        )
        if with_visibility:
            record["visibility"] = round(float(mark.visibility), 4)
        records.append(record)
    return records


def pixel_points(records: Sequence[dict]) -> list[tuple[float, float]]:
    return [(record["px"], record["py"]) for record in records]


class MediaPipeExtractor(Extractor):
    """An extractor backed by one MediaPipe legacy solution graph, built on first use.

    The graph runs in static-image mode (every image independent, no tracking between calls) on the
    input image as given; landmarks are normalised, so they are drawn at the condition's size.
    """

    _lazy_attributes = ("_graph",)

    def _build_graph(self) -> Any:
        raise NotImplementedError

    def _process(self, rgb: np.ndarray) -> Any:
        if self._graph is None:
            self._graph = self._build_graph()
        return self._graph.process(rgb)
