"""The `shapes` kind: filled shapes of named colours on solid or gradient backgrounds.

A richer fill50k: one to three non-overlapping shapes (circle, square, triangle, star, hexagon,
diamond), each a different named colour, none the colour of the background. The caption names colours,
shapes and where they are ("a red circle above a blue square on a yellow background"); the relation
words come from the shape centres, and placement keeps every relation clear-cut (the dominant axis
offset beats the other by a margin), so the caption is true of the picture, never a coin toss.
"""

from __future__ import annotations

import math

import numpy as np

from controlsprint.data.synth.draw import fill_circle, fill_polygon, sample_background
from controlsprint.data.synth.palette import NAMED_COLOURS, SEGMENT_CLASS_COLOURS, article
from controlsprint.data.synth.scene import Kind, Scene, normalised_box

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "hexagon", "diamond")
# Relation margin: the dominant offset must exceed the other axis' offset by this fraction of the size.
RELATION_MARGIN = 0.08
_PLACEMENT_TRIES = 60


def shape_polygon(shape: str, centre: np.ndarray, radius: float, angle: float) -> np.ndarray:
    """Vertices (x, y) in pixels of a shape inscribed in the circle (centre, radius); not for circles."""
    if shape == "star":
        angles = angle - math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    elif shape == "diamond":  # taller than wide, so it never reads as a rotated square
        angles = np.array([-math.pi / 2, 0.0, math.pi / 2, math.pi])
        radii = np.array([radius, radius * 0.65, radius, radius * 0.65])
    else:
        sides = {"square": 4, "triangle": 3, "hexagon": 6}[shape]
        start = angle + (math.pi / 4 if shape == "square" else -math.pi / 2)
        angles = start + np.arange(sides) * 2 * math.pi / sides
        radii = np.full(sides, radius)
    return centre + np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)


def _clear_relation(a: np.ndarray, b: np.ndarray, size: int) -> bool:
    dx, dy = abs(a[0] - b[0]), abs(a[1] - b[1])
    return abs(dx - dy) > RELATION_MARGIN * size


def _place(rng: np.random.Generator, count: int, size: int) -> list[tuple[np.ndarray, float]]:
    """Centres and radii of `count` shapes that do not overlap; fewer if the picture is too crowded."""
    low, high = (0.12, 0.2) if count < 3 else (0.09, 0.15)
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(_PLACEMENT_TRIES):
        if len(placed) == count:
            break
        radius = float(rng.uniform(low, high) * size)
        margin = radius + 0.03 * size
        centre = rng.uniform(margin, size - margin, size=2)
        if any(np.hypot(*(centre - c)) < radius + r + 0.04 * size for c, r in placed):
            continue
        # Every pair gets a clear-cut relation, so the caption may relate any two of them.
        if any(not _clear_relation(centre, c, size) for c, _ in placed):
            continue
        placed.append((centre, radius))
    return placed


def _relation(a: np.ndarray, b: np.ndarray) -> str:
    """Where a is relative to b, along the axis of the larger offset (image y grows downwards)."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    if abs(dy) >= abs(dx):
        return "above" if dy < 0 else "below"
    return "to the left of" if dx < 0 else "to the right of"


def _where(centre: np.ndarray, size: int) -> str:
    """Position in the picture by thirds: 'at the top left', 'in the center', 'on the right'..."""
    column = ("left", "center", "right")[min(2, int(3 * centre[0] / size))]
    row = ("top", "middle", "bottom")[min(2, int(3 * centre[1] / size))]
    if (row, column) == ("middle", "center"):
        return "in the center"
    if row == "middle":
        return f"on the {column}"
    if column == "center":
        return f"at the {row}"
    return f"at the {row} {column}"


def _noun(obj: dict) -> str:
    return f"{article(obj['colour'])} {obj['colour']} {obj['class']}"


def caption_for(objects: list[dict], background_phrase: str, size: int) -> str:
    centres = [np.asarray(o["centre_px"]) for o in objects]
    on = f"on {background_phrase}"
    if len(objects) == 1:
        return f"{_noun(objects[0])} {_where(centres[0], size)} {on}"
    pair = f"{_noun(objects[0])} {_relation(centres[0], centres[1])} {_noun(objects[1])}"
    if len(objects) == 2:
        return f"{pair} {on}"
    return f"{pair}, and {_noun(objects[2])} {_where(centres[2], size)}, {on}"


def sample_shape(rng: np.random.Generator) -> tuple[str, float]:
    """A random shape class and its rotation (squares stay nearly upright, so they read as squares)."""
    shape = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
    angle = float(rng.uniform(-0.25, 0.25)) if shape == "square" else float(rng.uniform(0, 2 * math.pi))
    return shape, angle


def draw_shape(
    image: np.ndarray, segmentation: np.ndarray, shape: str, centre, radius: float, angle: float, rgb
) -> np.ndarray:
    """Draw one shape into the picture (anti-aliased, `rgb`) and the class map; returns its outline points."""
    class_colour = SEGMENT_CLASS_COLOURS[shape]
    if shape == "circle":
        fill_circle(image, centre, radius, rgb, antialias=True)
        fill_circle(segmentation, centre, radius, class_colour, antialias=False)
        return np.array([centre - radius, centre + radius])
    outline = shape_polygon(shape, centre, radius, angle)
    fill_polygon(image, outline, rgb, antialias=True)
    fill_polygon(segmentation, outline, class_colour, antialias=False)
    return outline


def shape_record(shape: str, colour: str, centre: np.ndarray, radius: float, outline, size: int) -> dict:
    """The JSON ground truth of one drawn shape (the `objects` column's per-shape record)."""
    return {
        "class": shape,
        "colour": colour,
        "rgb": list(NAMED_COLOURS[colour]),
        "centre": [round(float(v) / size, 4) for v in centre],
        "centre_px": [round(float(v), 2) for v in centre],
        "radius": round(radius / size, 4),
        "bbox": normalised_box(outline, size),
    }


def render_shapes(rng: np.random.Generator, size: int) -> Scene:
    count = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    colour_names = list(NAMED_COLOURS)
    order = rng.permutation(len(colour_names))
    placements = _place(rng, count, size)
    object_colours = [colour_names[i] for i in order[: len(placements)]]
    background = sample_background(rng, [colour_names[i] for i in order[len(placements) :]])
    image = background.render(size)
    segmentation = np.zeros((size, size, 3), np.uint8)
    objects: list[dict] = []
    for (centre, radius), colour in zip(placements, object_colours, strict=True):
        shape, angle = sample_shape(rng)
        outline = draw_shape(image, segmentation, shape, centre, radius, angle, NAMED_COLOURS[colour])
        objects.append(shape_record(shape, colour, centre, radius, outline, size))
    caption = caption_for(objects, background.phrase, size)
    ground_truth = [
        {
            "class": "background",
            "colours": list(background.colours),
            "gradient": None
            if len(background.colours) == 1
            else ("vertical" if background.vertical else "horizontal"),
        },
        *objects,
    ]
    return Scene(image=image, segmentation=segmentation, caption=caption, objects=ground_truth)


SHAPES = Kind(
    name="shapes",
    description="one to three coloured shapes on a solid or gradient background, captions name colours and positions",
    conditions=("segment", "canny", "gray"),
    render=render_shapes,
)
