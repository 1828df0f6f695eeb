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


def as_point_array(points: Sequence[Point | None] | np.ndarray) -> np.ndarray:
    """(n, 2) float pixel coordinates; a missing point (None) becomes a row of NaN."""
    if isinstance(points, np.ndarray):
        return points.reshape(-1, 2).astype(np.float64, copy=False)
    return np.array(
        [point if point is not None else (np.nan, np.nan) for point in points], np.float64
    ).reshape(-1, 2)


def fixed_points(points: Sequence[Point | None] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points in cv2's fixed-point pixels ((n, 2) int32) and a mask of the present ones."""
    coordinates = as_point_array(points)
    present = ~np.isnan(coordinates).any(axis=1)
    return np.round(np.nan_to_num(coordinates) * _ONE).astype(np.int32), present


def edge_chains(edges: Iterable[tuple[int, int]]) -> tuple[np.ndarray, ...]:
    """Cover an undirected edge set with few paths (each edge exactly once), as arrays of point indices.

    One polyline per path costs one cv2 call for what would otherwise be one per edge.
    """
    adjacency: dict[int, list[tuple[int, int]]] = {}
    edge_list = [(int(a), int(b)) for a, b in edges]
    for index, (a, b) in enumerate(edge_list):
        adjacency.setdefault(a, []).append((b, index))
        adjacency.setdefault(b, []).append((a, index))
    used = [False] * len(edge_list)

    def unused_step(node: int) -> tuple[int, int] | None:
        return next(((other, index) for other, index in adjacency[node] if not used[index]), None)

    chains = []
    # Odd-degree nodes first: open paths are then walked from one end, and cycles come last.
    for start in sorted(adjacency, key=lambda node: (len(adjacency[node]) % 2 == 0, node)):
        while unused_step(start) is not None:
            path, node = [start], start
            while (step := unused_step(node)) is not None:
                used[step[1]] = True
                node = step[0]
                path.append(node)
            chains.append(np.array(path, dtype=np.intp))
    return tuple(chains)


def draw_paths(
    canvas: np.ndarray, fixed: np.ndarray, paths: Sequence[np.ndarray], colour: Colour, width: int
) -> None:
    """Open polylines through fixed-point points (see `fixed_points`), one colour, one cv2 call."""
    import cv2

    cv2.polylines(canvas, [fixed[path] for path in paths], False, colour, width, cv2.LINE_AA, _SHIFT)


def draw_bones(
    canvas: np.ndarray,
    points: Sequence[Point | None] | np.ndarray,
    bones: Iterable[tuple[int, int]] | np.ndarray,
    colours: Sequence[Colour],
    width: int,
) -> None:
    """Draw each bone (a, b) from points[a] to points[b] in colours[i]; bones with a missing end are skipped."""
    import cv2

    fixed, present = fixed_points(points)
    pairs = np.asarray(bones, dtype=np.intp).reshape(-1, 2)
    corners = fixed.tolist()  # cv2 takes plain int pairs fastest
    for index in np.flatnonzero(present[pairs[:, 0]] & present[pairs[:, 1]]).tolist():
        start, end = pairs[index]
        colour = colours[index % len(colours)]
        cv2.line(canvas, corners[start], corners[end], colour, width, cv2.LINE_AA, _SHIFT)


def draw_joints(
    canvas: np.ndarray,
    points: Sequence[Point | None] | np.ndarray,
    colours: Sequence[Colour],
    radius: int,
) -> None:
    """A filled dot at every present point, point i in colours[i] (cycled)."""
    import cv2

    fixed, present = fixed_points(points)
    centres = fixed.tolist()
    for index in np.flatnonzero(present).tolist():
        colour = colours[index % len(colours)]
        cv2.circle(canvas, centres[index], radius * _ONE, colour, -1, cv2.LINE_AA, _SHIFT)
