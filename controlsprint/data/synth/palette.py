"""Named colours for captions, class colours for segmentation maps, skin tones.

The tables are public on purpose: tests and evaluation read them to check that what a caption names
is really in the picture and in the segmentation map.
"""

from __future__ import annotations

from types import MappingProxyType

# Colours a caption may name (RGB). Chosen far apart so a model can learn them and a test can tell
# them apart exactly.
NAMED_COLOURS = MappingProxyType(
    {
        "red": (220, 40, 40),
        "orange": (245, 140, 30),
        "yellow": (245, 215, 40),
        "green": (50, 170, 70),
        "blue": (40, 90, 220),
        "purple": (130, 60, 180),
        "pink": (240, 120, 180),
        "brown": (130, 80, 40),
        "white": (245, 245, 245),
        "black": (25, 25, 25),
        "gray": (128, 128, 128),
        "cyan": (40, 200, 210),
    }
)

# Segmentation classes and their colours in the `segment` condition; background is black.
SEGMENT_CLASS_COLOURS = MappingProxyType(
    {
        "background": (0, 0, 0),
        "circle": (255, 0, 0),
        "square": (0, 255, 0),
        "triangle": (0, 0, 255),
        "star": (255, 255, 0),
        "hexagon": (255, 0, 255),
        "diamond": (0, 255, 255),
        "hand": (255, 128, 0),
        "arm": (128, 0, 255),
    }
)

# Skin tones (RGB) with the word the caption uses.
SKIN_TONES = MappingProxyType(
    {
        "pale": (250, 222, 200),
        "light": (236, 192, 160),
        "tan": (205, 150, 110),
        "brown": (150, 100, 65),
        "dark": (95, 62, 42),
    }
)


def nearest_named_colours(rgb) -> list[str]:
    """The NAMED_COLOURS name nearest (RGB distance) to each colour of `rgb` ([3] or [N, 3])."""
    import numpy as np

    names = list(NAMED_COLOURS)
    palette = np.array([NAMED_COLOURS[n] for n in names], np.float64)
    rgb = np.atleast_2d(np.asarray(rgb, np.float64))
    return [names[i] for i in np.argmin(((rgb[:, None] - palette[None]) ** 2).sum(-1), axis=1)]


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[:1].lower() in "aeiou" else "a"
