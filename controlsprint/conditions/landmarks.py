"""MediaPipe plumbing shared by `hands`, `pose` and `face`: the lazy graph and landmark records.

Landmark records are JSON-ready dicts:
  {"x", "y", "z"}: MediaPipe's normalised coordinates (x, y in [0, 1] across the image width and height
                   when inside the image, possibly a little outside; z relative depth, same scale as x);
  {"px", "py"}:   the same point in pixels of the condition image (x * width, y * height);
  "name" (hands, pose) and "visibility" (pose) where MediaPipe defines them.
Values are rounded (5 decimals normalised, 2 in pixels) to keep the JSON small and stable.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from controlsprint.conditions.base import Extractor


def landmark_values(landmarks: Sequence[Any], with_visibility: bool = False) -> np.ndarray:
    """MediaPipe landmarks as an (n, 3) array of x, y, z, or (n, 4) with visibility."""
    if with_visibility:
        return np.array([(m.x, m.y, m.z, m.visibility) for m in landmarks], dtype=np.float64).reshape(-1, 4)
    return np.array([(m.x, m.y, m.z) for m in landmarks], dtype=np.float64).reshape(-1, 3)


def pixel_coordinates(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, 2) pixel coordinates in an image of `size` = (height, width), rounded as in the records."""
    height, width = size
    return np.round(values[:, :2] * (width, height), 2) + 0.0  # + 0.0 turns -0.0 into 0.0 in the JSON


def landmark_records(
    values: np.ndarray, size: tuple[int, int], names: Sequence[str] | None = None
) -> list[dict]:
    """JSON-ready records from `landmark_values` (with visibility when it has a fourth column)."""
    # Rounded in numpy, built from plain lists: a face has 478 landmarks, and per-value Python work
    # was a measurable share of the face extractor's time (see bench/extract.py).
    rows = np.concatenate(
        [np.round(values[:, :3], 5) + 0.0, pixel_coordinates(values, size)], axis=1
    ).tolist()
    records = [{"x": x, "y": y, "z": z, "px": px, "py": py} for x, y, z, px, py in rows]
    if values.shape[1] == 4:
        for record, visibility in zip(records, (np.round(values[:, 3], 4) + 0.0).tolist(), strict=True):
            record["visibility"] = visibility
    if names is not None:
        records = [{"name": name, **record} for name, record in zip(names, records, strict=True)]
    return records


class MediaPipeExtractor(Extractor):
    """An extractor backed by one MediaPipe legacy solution graph, built on first use.

    The graph runs in static-image mode (every image independent, no tracking between calls) on the
    input image as given; landmarks are normalised, so they are drawn at the condition's size.
    """

    _lazy_attributes = ("_graph",)

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._settled = False  # whether the graph has started up and produced a first detection

    @abc.abstractmethod
    def _build_graph(self) -> Any:
        """A new MediaPipe solution object configured from `self.options`."""

    @staticmethod
    @abc.abstractmethod
    def _detected(found: Any) -> bool:
        """Whether a `.process` result holds at least one detection."""

    def graph(self) -> Any:
        """The MediaPipe solution object (built on first use), for callers who want raw `.process` results."""
        if self._graph is None:
            with quiet_native_stderr():
                self._graph = self._build_graph()
            self._settled = False  # a new graph logs again on its first detection
        return self._graph

    def _process(self, rgb: np.ndarray) -> Any:
        if self._settled:
            return self.graph().process(rgb)
        # Start-up and the first detection print C++ log chatter once; keep it off the user's screen.
        with quiet_native_stderr():
            found = self.graph().process(rgb)
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
