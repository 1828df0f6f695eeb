"""MediaPipe plumbing shared by `hands`, `pose` and `face`: the lazy graph and landmark records.

Landmark records are JSON-ready dicts:
  {"x", "y", "z"}: MediaPipe's normalised coordinates (x, y in [0, 1] across the image width and height
                   when inside the image, possibly a little outside; z relative depth, same scale as x);
  {"px", "py"}:   the same point in pixels of the condition image (x * width, y * height);
  "name" (hands, pose) and "visibility" (pose) where MediaPipe defines them.
Values are rounded (5 decimals normalised, 2 in pixels) to keep the JSON small and stable.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
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
    # Rounded in one numpy pass: a face has 478 landmarks, and per-value Python rounding was a
    # measurable share of the face extractor's time (see bench/extract.py).
    fields = ("x", "y", "z", "visibility") if with_visibility else ("x", "y", "z")
    values = np.array([[getattr(mark, field) for field in fields] for mark in landmarks], dtype=np.float64)
    values = values.reshape(len(landmarks), len(fields))
    normalised = (np.round(values[:, :3], 5) + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0 in the JSON
    pixels = (np.round(values[:, :2] * (width, height), 2) + 0.0).tolist()
    visibility = (np.round(values[:, 3], 4) + 0.0).tolist() if with_visibility else None
    records = []
    for index, ((x, y, z), (px, py)) in enumerate(zip(normalised, pixels, strict=True)):
        record = {"name": names[index]} if names is not None else {}
        record.update(x=x, y=y, z=z, px=px, py=py)
        if visibility is not None:
            record["visibility"] = visibility[index]
        records.append(record)
    return records


def pixel_points(records: Sequence[dict]) -> np.ndarray:
    """(n, 2) pixel coordinates of landmark records, for drawing."""
    return np.array([(record["px"], record["py"]) for record in records], dtype=np.float64).reshape(-1, 2)


class MediaPipeExtractor(Extractor):
    """An extractor backed by one MediaPipe legacy solution graph, built on first use.

    The graph runs in static-image mode (every image independent, no tracking between calls) on the
    input image as given; landmarks are normalised, so they are drawn at the condition's size.
    """

    _lazy_attributes = ("_graph",)

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._settled = False  # whether the graph has started up and produced a first detection

    def _build_graph(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def _detected(found: Any) -> bool:
        raise NotImplementedError

    def _process(self, rgb: np.ndarray) -> Any:
        if self._settled and self._graph is not None:
            return self._graph.process(rgb)
        # Start-up and the first detection print C++ log chatter once; keep it off the user's screen.
        with quiet_native_stderr():
            if self._graph is None:
                self._graph = self._build_graph()
            found = self._graph.process(rgb)
        self._settled = self._detected(found)
        return found


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what native code (MediaPipe's C++ and TFLite logging) writes to file descriptor 2.

    Those lines (XNNPACK delegate created, feedback tensors disabled, ...) are start-up chatter, not
    problems, and they would bury the CLI's one-line messages. Python exceptions still propagate.
    Set CONTROLSPRINT_NATIVE_LOGS=1 to see them. The redirect is process-wide while it lasts (the
    first call of an extractor), which is why it is kept that short.
    """
    if os.environ.get("CONTROLSPRINT_NATIVE_LOGS") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
