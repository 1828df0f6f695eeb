"""The `hands` kind: stylised hands drawn from 21-point skeletons, with the skeleton as the condition.

A hand is a small 2D model seen palm-on: wrist, five fingers with three bones each, a thumb that
swings across the palm as it curls. A finger flexes out of the picture plane, so its bones are drawn
foreshortened (length * cos(cumulative flexion)), which is what a camera facing the palm sees. A
gesture fixes how much each finger curls (open palm, fist, pointing, peace sign, thumbs up, ...);
small random variations, rotation, scale, handedness (mirroring) and skin tone make the rest. The
picture is a skin-toned palm polygon, finger capsules and a sleeved forearm; the landmarks are those of
MediaPipe's hand model (0 wrist, 1-4 thumb, 5-8 index, 9-12 middle, 13-16 ring, 17-20 pinky), recorded
in the `hands` extractor's format so evaluation compares detected and true hands directly.
"""

from __future__ import annotations

import math

import numpy as np

from controlsprint.data.synth.draw import capsule, fill_polygon, sample_background
from controlsprint.data.synth.palette import NAMED_COLOURS, SEGMENT_CLASS_COLOURS, SKIN_TONES, article
from controlsprint.data.synth.scene import Kind, Scene, normalised_box

# Canonical right hand, palm towards the viewer, fingers up: x right, y up, unit = palm length
# (wrist to middle knuckle). Seen palm-on, a right hand has its thumb on the picture's left.
_KNUCKLES = np.array([[-0.30, 0.92], [-0.08, 1.0], [0.13, 0.95], [0.31, 0.84]])  # index..pinky MCP
_FINGER_DIRECTION = np.array([-0.14, -0.03, 0.08, 0.2])  # radians from straight up, spread 1
_FINGER_BONES = np.array([[0.42, 0.25, 0.2], [0.47, 0.29, 0.21], [0.43, 0.27, 0.2], [0.33, 0.2, 0.18]])
_FULL_FLEXION = np.radians([80.0, 100.0, 65.0])  # MCP, PIP, DIP at curl 1
_THUMB_BASE = np.array([-0.22, 0.18])  # CMC
_THUMB_BONES = np.array([0.38, 0.3, 0.24])
_THUMB_OPEN = -0.95  # radians from up: abducted, pointing up and out
_THUMB_SWING = np.array([1.2, 1.9, 2.4])  # extra turn of each bone towards the palm at curl 1
_PALM = np.array(
    [[-0.27, -0.02], [-0.36, 0.42], [-0.34, 0.9], [-0.08, 1.03], [0.14, 0.98], [0.35, 0.86], [0.3, -0.02]]
)
_FINGER_WIDTH = np.array([0.2, 0.19, 0.2, 0.18, 0.15])  # thumb, index, middle, ring, pinky

LANDMARK_NAMES = (
    "wrist",
    *(f"thumb_{j}" for j in ("cmc", "mcp", "ip", "tip")),
    *(
        f"{f}_{j}"
        for f in ("index_finger", "middle_finger", "ring_finger", "pinky")
        for j in ("mcp", "pip", "dip", "tip")
    ),
)

# gesture -> (curl of thumb, index, middle, ring, pinky), finger spread, caption phrase
GESTURES = {
    "open": ((0.0, 0.0, 0.0, 0.0, 0.0), 1.0, "with an open palm"),
    "fist": ((0.9, 1.0, 1.0, 1.0, 1.0), 1.0, "making a fist"),
    "point": ((0.9, 0.0, 1.0, 1.0, 1.0), 1.0, "pointing with the index finger"),
    "peace": ((0.9, 0.0, 0.0, 1.0, 1.0), 1.8, "making a peace sign"),
    "thumbs_up": ((0.0, 1.0, 1.0, 1.0, 1.0), 1.0, "giving a thumbs up"),
    "rock": ((0.9, 0.0, 1.0, 1.0, 0.0), 1.4, "making a rock sign"),
    "three": ((0.9, 0.0, 0.0, 0.0, 1.0), 1.3, "showing three fingers"),
}


def _up_direction(angle: np.ndarray | float) -> np.ndarray:
    return np.stack([np.sin(angle), np.cos(angle)], axis=-1)


def hand_landmarks(curls: np.ndarray, spread: float) -> np.ndarray:
    """21x2 canonical landmarks (right hand, palm-on, y up) for per-finger curls in [0, 1]."""
    points = np.zeros((21, 2))
    # Thumb: each bone turns further towards the palm and shortens a little as the thumb curls.
    turns = _THUMB_OPEN + curls[0] * _THUMB_SWING
    bones = _THUMB_BONES * np.cos(curls[0] * np.array([0.2, 0.45, 0.6]))
    points[1] = _THUMB_BASE
    points[2:5] = _THUMB_BASE + np.cumsum(bones[:, None] * _up_direction(turns), axis=0)
    for finger in range(4):
        flexion = np.cumsum(curls[finger + 1] * _FULL_FLEXION)
        axis = _up_direction(_FINGER_DIRECTION[finger] * spread)
        steps = (_FINGER_BONES[finger] * np.cos(flexion))[:, None] * axis
        base = 5 + 4 * finger
        points[base] = _KNUCKLES[finger]
        points[base + 1 : base + 4] = _KNUCKLES[finger] + np.cumsum(steps, axis=0)
    return points


def _to_picture(
    points: np.ndarray, mirror: bool, angle: float, scale: float, offset: np.ndarray
) -> np.ndarray:
    """Canonical (y up) -> picture pixels (y down): mirror for a left hand, rotate, scale, move."""
    p = points * np.array([-1.0 if mirror else 1.0, -1.0])
    c, s = math.cos(angle), math.sin(angle)
    return p @ np.array([[c, s], [-s, c]]) * scale + offset


def _sample_pose(rng: np.random.Generator, gesture: str, mirror: bool) -> tuple[float, np.ndarray]:
    """A varied pose of `gesture`: rotation (radians, clockwise in the picture), canonical landmarks."""
    curls, spread, _ = GESTURES[gesture]
    curls = np.clip(np.asarray(curls) + rng.uniform(-0.08, 0.08, 5), 0.0, 1.0)
    spread = float(spread * rng.uniform(0.8, 1.2))
    canonical = hand_landmarks(curls, spread)
    if gesture == "thumbs_up":
        # Turn the hand so the thumb (MCP -> tip) points up in the picture.
        thumb = np.diff(_to_picture(canonical[[2, 4]], mirror, 0.0, 1.0, np.zeros(2)), axis=0)[0]
        angle = -math.atan2(thumb[0], -thumb[1]) + float(rng.uniform(-0.2, 0.2))
    else:
        angle = float(rng.uniform(-0.6, 0.6))
    return angle, canonical


def _draw_hand(image, segmentation, landmarks, palm, forearm, scale, skin, sleeve) -> None:
    """Sleeve, forearm, palm, fingers (pinky first), thumb last; each part outlined in a darker skin."""
    skin_rgb = np.asarray(SKIN_TONES[skin])
    outline_rgb = (skin_rgb * 0.72).astype(int)
    hand_class, arm_class = SEGMENT_CLASS_COLOURS["hand"], SEGMENT_CLASS_COLOURS["arm"]
    border = max(1.0, 0.035 * scale)
    wrist, cuff, elbow = forearm
    capsule(image, cuff, elbow, 0.8 * scale, NAMED_COLOURS[sleeve], antialias=True)
    capsule(segmentation, cuff, elbow, 0.8 * scale, arm_class, antialias=False)
    capsule(image, wrist, cuff, 0.62 * scale + 2 * border, outline_rgb, antialias=True)
    capsule(image, wrist, cuff, 0.62 * scale, skin_rgb, antialias=True)
    capsule(segmentation, wrist, cuff, 0.62 * scale, hand_class, antialias=False)
    fill_polygon(image, palm, skin_rgb, antialias=True)
    fill_polygon(segmentation, palm, hand_class, antialias=False)
    for finger in (4, 3, 2, 1, 0):
        joints = landmarks[4 * finger + 1 : 4 * finger + 5]  # knuckle to tip (the thumb: CMC to tip)
        for bone in range(3):
            width = _FINGER_WIDTH[finger] * scale * (1.0 - 0.08 * bone)
            a, b = joints[bone], joints[bone + 1]
            capsule(image, a, b, width + 2 * border, outline_rgb, antialias=True)
            capsule(image, a, b, width, skin_rgb, antialias=True)
            capsule(segmentation, a, b, width, hand_class, antialias=False)


def landmark_records(points: np.ndarray, size: int) -> list[dict]:
    """21 pixel points -> the `hands` extractor's landmark records (z is 0: the model is flat)."""
    return [
        {
            "name": name,
            "x": round(x / size, 5),
            "y": round(y / size, 5),
            "z": 0.0,
            "px": round(x, 2),
            "py": round(y, 2),
        }
        for name, (x, y) in zip(LANDMARK_NAMES, points.tolist(), strict=True)
    ]


def _hand_phrase(hand: dict) -> str:
    return f"a {hand['skin']}-skinned {hand['handedness'].lower()} hand {GESTURES[hand['gesture']][2]}"


def _sleeve_phrase(hand: dict) -> str:
    return f"{article(hand['sleeve'])} {hand['sleeve']} sleeve"


def render_hands(rng: np.random.Generator, size: int) -> Scene:
    count = 1 if rng.random() < 0.8 else 2
    colour_names = list(NAMED_COLOURS)
    order = rng.permutation(len(colour_names))
    sleeves = [colour_names[i] for i in order[:count]]
    background = sample_background(rng, [colour_names[i] for i in order[count:]])
    image = background.render(size)
    segmentation = np.zeros((size, size, 3), np.uint8)
    gesture_names = list(GESTURES)
    skin_names = list(SKIN_TONES)
    hands: list[dict] = []
    for slot in range(count):
        gesture = gesture_names[int(rng.integers(len(gesture_names)))]
        skin = skin_names[int(rng.integers(len(skin_names)))]
        mirror = bool(rng.random() < 0.5)
        angle, canonical = _sample_pose(rng, gesture, mirror)
        # Fit the hand (with a margin for finger width) into its slot of the picture.
        slot_left, slot_width = slot * size / count, size / count
        unit = _to_picture(canonical, mirror, angle, 1.0, np.zeros(2))
        extent = unit.max(axis=0) - unit.min(axis=0) + 0.5
        scale = min(0.85 * slot_width / extent[0], 0.85 * size / extent[1]) * float(rng.uniform(0.7, 1.0))
        low = -unit.min(axis=0) * scale + 0.25 * scale
        high = np.array([slot_width, size]) - unit.max(axis=0) * scale - 0.25 * scale
        offset = np.array([slot_left, 0.0]) + rng.uniform(np.minimum(low, high), np.maximum(low, high))
        landmarks = _to_picture(canonical, mirror, angle, scale, offset)
        palm = _to_picture(_PALM, mirror, angle, scale, offset)
        arm_axis = _to_picture(
            np.array([[0.0, 0.0], [0.0, -0.45], [0.0, -6.0]]), mirror, angle, scale, offset
        )
        _draw_hand(image, segmentation, landmarks, palm, arm_axis, scale, skin, sleeves[slot])
        hands.append(
            {
                "class": "hand",
                "handedness": "Left" if mirror else "Right",
                "gesture": gesture,
                "skin": skin,
                "sleeve": sleeves[slot],
                "bbox": normalised_box(np.concatenate([landmarks, palm]), size),
                "landmarks": landmark_records(landmarks, size),
            }
        )
    on = f"on {background.phrase}"
    if count == 1:
        caption = f"{_hand_phrase(hands[0])}, wearing {_sleeve_phrase(hands[0])}, {on}"
    else:
        caption = f"{_hand_phrase(hands[0])} on the left and {_hand_phrase(hands[1])} on the right, {on}"
    ground_truth = [{"class": "background", "colours": list(background.colours)}, *hands]
    return Scene(
        image=image, segmentation=segmentation, caption=caption, objects=ground_truth, hands=tuple(hands)
    )


HANDS = Kind(
    name="hands",
    description="stylised hands (open palm, fist, pointing, peace, thumbs up, ...) with their skeleton drawn as the hands extractor draws it",
    conditions=("hands", "segment", "canny", "gray"),
    render=render_hands,
)
