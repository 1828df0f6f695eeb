"""Drawing helpers shared by the synth kinds: backgrounds, polygons, PNG encoding.

Everything draws with integer arithmetic in OpenCV, so the same seed gives the same bytes on every run.
The picture is anti-aliased; segmentation maps are drawn without anti-aliasing so every pixel carries
exactly one class colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from controlsprint.data.synth.palette import NAMED_COLOURS, article

# Sub-pixel precision for cv2 drawing calls (coordinates are multiplied by 2**SHIFT).
SHIFT = 4
_SCALE = 1 << SHIFT


@dataclass(frozen=True)
class Background:
    """A solid or two-colour linear gradient background, with the words a caption uses for it."""

    colours: tuple[str, ...]  # one name (solid) or two (gradient, from -> to)
    vertical: bool

    @property
    def phrase(self) -> str:
        first = f"{article(self.colours[0])} {self.colours[0]}"
        if len(self.colours) == 1:
            return f"{first} background"
        return f"{first} and {self.colours[1]} gradient background"

    def render(self, size: int) -> np.ndarray:
        first = np.asarray(NAMED_COLOURS[self.colours[0]], np.float32)
        if len(self.colours) == 1:
            return np.broadcast_to(first.astype(np.uint8), (size, size, 3)).copy()
        last = np.asarray(NAMED_COLOURS[self.colours[1]], np.float32)
        ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
        line = np.rint(first * (1.0 - ramp) + last * ramp).astype(np.uint8)  # size x 3
        if self.vertical:
            return np.broadcast_to(line[:, None, :], (size, size, 3)).copy()
        return np.broadcast_to(line[None, :, :], (size, size, 3)).copy()


def sample_background(rng: np.random.Generator, allowed: list[str]) -> Background:
    """Solid 60% of the time, otherwise a gradient between two distinct allowed colours."""
    picks = rng.permutation(len(allowed))
    if rng.random() < 0.6:
        return Background((allowed[picks[0]],), vertical=False)
    return Background((allowed[picks[0]], allowed[picks[1]]), vertical=bool(rng.random() < 0.5))


def to_fixed(points: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> cv2's fixed-point int32 coordinates for `shift=SHIFT`."""
    return np.rint(np.asarray(points, np.float64) * _SCALE).astype(np.int32)


def fill_polygon(canvas: np.ndarray, points: np.ndarray, colour, *, antialias: bool) -> None:
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    cv2.fillPoly(canvas, [to_fixed(points)], tuple(int(c) for c in colour), line_type, SHIFT)


def fill_circle(canvas: np.ndarray, centre, radius: float, colour, *, antialias: bool) -> None:
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    cx, cy = to_fixed(centre)
    cv2.circle(
        canvas,
        (int(cx), int(cy)),
        int(round(radius * _SCALE)),
        tuple(int(c) for c in colour),
        -1,
        line_type,
        SHIFT,
    )


def capsule(canvas: np.ndarray, start, end, width: float, colour, *, antialias: bool) -> None:
    """A thick segment with round caps (a finger bone, a sleeve)."""
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    thickness = max(1, int(round(width)))
    a, b = to_fixed(start), to_fixed(end)
    cv2.line(
        canvas,
        (int(a[0]), int(a[1])),
        (int(b[0]), int(b[1])),
        tuple(int(c) for c in colour),
        thickness,
        line_type,
        SHIFT,
    )
