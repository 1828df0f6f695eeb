"""Skeleton drawing on a black canvas, shared by the hands, pose and face extractors.

Strokes scale with the canvas (about 1 px per 200 px of the short side, at least 1) so a condition
looks the same at 256 px and at 1024 px.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Sequence

import numpy as np

Colour = tuple[int, int, int]
Point = tuple[float, float]


def black_canvas(size: tuple[int, int]) -> np.ndarray:
    return np.zeros((size[0], size[1], 3), dtype=np.uint8)


def stroke_width(size: tuple[int, int], per_pixels: float = 200.0) -> int:
    return max(1, round(min(size) / per_pixels))


def hue_sweep(count: int, saturation: float = 1.0, value: float = 1.0) -> tuple[Colour, ...]:
    """`count` colours with hues evenly spaced from red round the colour wheel."""
    colours = []
    for index in range(count):
        red, green, blue = colorsys.hsv_to_rgb(index / count, saturation, value)
        colours.append((round(red * 255), round(green * 255), round(blue * 255)))
    return tuple(colours)


def scale_colour(colour: Colour, factor: float) -> Colour:
    return (round(colour[0] * factor), round(colour[1] * factor), round(colour[2] * factor))


# cv2 draws at integer coordinates; 4 bits of sub-pixel precision keep thin anti-aliased lines smooth.
_SHIFT = 4
_ONE = 1 << _SHIFT


def _fixed(point: Point) -> tuple[int, int]:
    return round(point[0] * _ONE), round(point[1] * _ONE)


def draw_bones(
    canvas: np.ndarray,
    points: Sequence[Point | None],
    bones: Iterable[tuple[int, int]],
    colours: Sequence[Colour],
    width: int,
) -> None:
    """Draw each bone (a, b) from points[a] to points[b] in colours[i]; bones with a missing end are skipped."""
    import cv2

    for index, (start, end) in enumerate(bones):
        if points[start] is None or points[end] is None:
            continue
        colour = colours[index % len(colours)]
        cv2.line(canvas, _fixed(points[start]), _fixed(points[end]), colour, width, cv2.LINE_AA, _SHIFT)


def draw_joints(
    canvas: np.ndarray, points: Sequence[Point | None], colours: Sequence[Colour], radius: int
) -> None:
    """A filled dot at every present point, point i in colours[i] (cycled)."""
    import cv2

    for index, point in enumerate(points):
        if point is not None:
            colour = colours[index % len(colours)]
            cv2.circle(canvas, _fixed(point), radius * _ONE, colour, -1, cv2.LINE_AA, _SHIFT)
