"""What a synth kind produces: a `Scene` (picture + ground truth), and the `Kind` record of the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Scene:
    """One rendered example and everything known about it."""

    image: np.ndarray  # HxWx3 uint8 RGB, the picture
    segmentation: np.ndarray  # HxWx3 uint8, class colours from palette.SEGMENT_CLASS_COLOURS
    caption: str
    objects: list[dict]  # JSON-ready ground truth: class, colours, centres, boxes (normalised to [0, 1])
    # Hands in the `hands` extractor's record format: {"handedness", "landmarks": [21 {name, x, y, z, px, py}]}
    hands: tuple[dict, ...] = field(default=())
    # Clip kinds only: the frames [F, H, W, 3] uint8 (`image` is frames[0]) and the motion record (JSON-ready).
    frames: np.ndarray | None = None
    motion: dict | None = None


@dataclass(frozen=True)
class Kind:
    """A registered synth kind: `render(rng, size)` draws one scene from the generator.

    A clip kind (`clip=True`) is called as `render(rng, size, frames)` and fills `Scene.frames`.
    """

    name: str
    description: str  # one line, shown by `controlsprint synth --help`
    conditions: tuple[str, ...]  # the conditions this kind is made for, most useful first
    render: Callable[..., Scene]
    clip: bool = False


def normalised_box(points: np.ndarray, size: int) -> list[float]:
    """[x0, y0, x1, y1] of pixel points, as fractions of the picture size, clipped to the picture."""
    low = np.clip(points.min(axis=0) / size, 0.0, 1.0)
    high = np.clip(points.max(axis=0) / size, 0.0, 1.0)
    return [round(float(v), 4) for v in (*low, *high)]
