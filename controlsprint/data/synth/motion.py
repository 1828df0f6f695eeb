"""The `motion` kind: short clips of one shape moving, growing, shrinking or changing colour.

One to three shapes (the `shapes` kind's classes, drawing and colours) on a plain background; one of
them, the actor, does one motion over the clip while the others stand still:

- move: straight to the left, right, up or down, by 30-45% of the picture ("a red circle moving to
  the right on a yellow background");
- grow / shrink: its radius changes by a factor of 1.7-2.2 about a fixed centre ("a blue square
  growing");
- colour: it fades from one named colour to another ("a green triangle turning yellow").

Position, radius and colour change linearly from the first frame to the last, so the motion record
(`Scene.motion`) gives every frame exactly. Still shapes keep clear of the whole path the actor sweeps,
so nothing is ever hidden and the caption ("... with a still blue square ...") stays true in every frame.
The first frame is the scene's `image` and its segmentation is the scene's `segmentation`, so a clip
row is also an ordinary shapes row (hint image = first frame).
"""

from __future__ import annotations

import numpy as np

from controlsprint.data.synth.draw import Background
from controlsprint.data.synth.palette import NAMED_COLOURS, article
from controlsprint.data.synth.scene import Kind, Scene
from controlsprint.data.synth.shapes import draw_shape, sample_shape, shape_record

MOTIONS = ("move", "grow", "shrink", "colour")
# Unit steps in image coordinates (y grows downwards) and the words a caption uses for them.
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DIRECTION_PHRASES = {
    "left": "moving to the left",
    "right": "moving to the right",
    "up": "moving up",
    "down": "moving down",
}
_EDGE = 0.03  # fraction of the picture kept between any shape and the border
_GAP = 0.04  # fraction of the picture kept between a still shape and the actor's swept path
# Pixels added to that gap: cv2's anti-aliased fill reaches up to ~2.5 px beyond a star's sharp tips.
_FRINGE_PX = 3.0
_PLACEMENT_TRIES = 60


def motion_phrase(motion: dict) -> str:
    """'moving to the right', 'growing', 'shrinking' or 'turning yellow'."""
    if motion["type"] == "move":
        return DIRECTION_PHRASES[motion["direction"]]
    if motion["type"] == "colour":
        return f"turning {motion['end_colour']}"
    return {"grow": "growing", "shrink": "shrinking"}[motion["type"]]


def _actor_path(rng: np.random.Generator, kind: str, size: int):
    """(start centre, end centre, start radius, end radius, direction or None) of the actor, in pixels."""
    if kind == "move":
        direction = tuple(DIRECTIONS)[int(rng.integers(len(DIRECTIONS)))]
        radius = float(rng.uniform(0.09, 0.14) * size)
        distance = float(rng.uniform(0.3, 0.45) * size)
        margin = radius + _EDGE * size
        start = rng.uniform(margin, size - margin, size=2)
        step = np.asarray(DIRECTIONS[direction])
        axis = 0 if step[0] else 1
        # Along the motion the start leaves room for the whole distance before the far border.
        low, high = (
            (margin, size - margin - distance) if step[axis] > 0 else (margin + distance, size - margin)
        )
        start[axis] = rng.uniform(low, high)
        return start, start + step * distance, radius, radius, direction
    if kind in ("grow", "shrink"):
        small = float(rng.uniform(0.08, 0.11) * size)
        large = small * float(rng.uniform(1.7, 2.2))
        margin = large + _EDGE * size
        centre = rng.uniform(margin, size - margin, size=2)
        radii = (small, large) if kind == "grow" else (large, small)
        return centre, centre.copy(), *radii, None
    radius = float(rng.uniform(0.12, 0.2) * size)
    centre = rng.uniform(radius + _EDGE * size, size - radius - _EDGE * size, size=2)
    return centre, centre.copy(), radius, radius, None


def _distance_to_segment(point: np.ndarray, start: np.ndarray, end: np.ndarray) -> float:
    span = end - start
    length2 = float(span @ span)
    along = 0.0 if length2 == 0.0 else float(np.clip((point - start) @ span / length2, 0.0, 1.0))
    return float(np.hypot(*(point - (start + along * span))))


def _place_stills(rng, count: int, size: int, path) -> list[tuple[np.ndarray, float]]:
    """Centres and radii of up to `count` still shapes clear of the actor's path and of each other."""
    start, end, radius = path
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(_PLACEMENT_TRIES):
        if len(placed) == count:
            break
        r = float(rng.uniform(0.08, 0.13) * size)
        centre = rng.uniform(r + _EDGE * size, size - r - _EDGE * size, size=2)
        if _distance_to_segment(centre, start, end) < r + radius + _GAP * size + _FRINGE_PX:
            continue
        if any(np.hypot(*(centre - c)) < r + rc + _GAP * size for c, rc in placed):
            continue
        placed.append((centre, r))
    return placed


def _caption(actor: dict, stills: list[dict], motion: dict, background: Background) -> str:
    subject = f"{article(actor['colour'])} {actor['colour']} {actor['class']} {motion_phrase(motion)}"
    if stills:
        subject += " with " + " and ".join(f"a still {o['colour']} {o['class']}" for o in stills)
    return f"{subject} on {background.phrase}"


def render_motion(rng: np.random.Generator, size: int, frames: int) -> Scene:
    kind = MOTIONS[int(rng.integers(len(MOTIONS)))]
    start, end, start_radius, end_radius, direction = _actor_path(rng, kind, size)
    actor_shape, actor_angle = sample_shape(rng)
    stills = _place_stills(rng, int(rng.integers(0, 3)), size, (start, end, max(start_radius, end_radius)))
    names = list(NAMED_COLOURS)
    order = [names[i] for i in rng.permutation(len(names))]
    # Every colour differs: actor (both ends of a colour change), still shapes, background.
    start_colour = order.pop()
    end_colour = order.pop() if kind == "colour" else start_colour
    still_shapes = [(sample_shape(rng), order.pop()) for _ in stills]
    background = Background((order.pop(),), vertical=False)

    start_rgb = np.asarray(NAMED_COLOURS[start_colour], np.float64)
    end_rgb = np.asarray(NAMED_COLOURS[end_colour], np.float64)
    clip = np.empty((frames, size, size, 3), np.uint8)
    first_segmentation = None
    objects: list[dict] = []
    for t in range(frames):
        s = t / (frames - 1)
        image = background.render(size)
        segmentation = np.zeros((size, size, 3), np.uint8)
        for ((shape, angle), colour), (centre, radius) in zip(still_shapes, stills, strict=True):
            outline = draw_shape(image, segmentation, shape, centre, radius, angle, NAMED_COLOURS[colour])
            if t == 0:
                objects.append(shape_record(shape, colour, centre, radius, outline, size))
        centre = start + (end - start) * s
        radius = start_radius + (end_radius - start_radius) * s
        rgb = tuple(int(v) for v in np.rint(start_rgb + (end_rgb - start_rgb) * s))
        outline = draw_shape(image, segmentation, actor_shape, centre, radius, actor_angle, rgb)
        if t == 0:
            first_segmentation = segmentation
            objects.insert(0, shape_record(actor_shape, start_colour, centre, radius, outline, size))
        clip[t] = image

    motion = {
        "type": kind,
        "direction": direction,
        "class": actor_shape,
        "start_colour": start_colour,
        "end_colour": end_colour,
        "start_rgb": [int(v) for v in start_rgb],
        "end_rgb": [int(v) for v in end_rgb],
        "start_centre_px": [round(float(v), 2) for v in start],
        "end_centre_px": [round(float(v), 2) for v in end],
        "start_radius_px": round(start_radius, 2),
        "end_radius_px": round(end_radius, 2),
        "frames": frames,
        "size": size,
    }
    ground_truth = [{"class": "background", "colours": list(background.colours), "gradient": None}, *objects]
    return Scene(
        image=clip[0].copy(),
        segmentation=first_segmentation,
        caption=_caption(objects[0], objects[1:], motion, background),
        objects=ground_truth,
        frames=clip,
        motion=motion,
    )


MOTION = Kind(
    name="motion",
    description="clips of one to three shapes, one moving, growing, shrinking or changing colour; "
    "captions name the motion",
    conditions=("segment", "canny", "gray"),
    render=render_motion,
    clip=True,
)
