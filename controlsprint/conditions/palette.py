"""The segmentation palette: fixed, distinct colours given to regions by area rank.

ADE20K-style colour maps give every class a saturated colour of its own. Automatic segmentation has no
classes, so the colour follows the region's rank by area instead: the largest region is always
`SEGMENT_PALETTE[0]`, the next `[1]`, and so on. The same scene therefore gets the same colours from
run to run, and a ControlNet sees stable colour statistics. The colours are generated here (hues spread
by the golden ratio, three saturation/brightness levels); black is never used, it means "no region".
"""

from __future__ import annotations

import colorsys

import numpy as np

PALETTE_SIZE = 256
_GOLDEN = (5**0.5 - 1) / 2
_LEVELS = ((0.85, 0.95), (0.65, 0.75), (1.0, 0.55))  # (saturation, value) pairs, cycled


def _make_palette() -> np.ndarray:
    colours = []
    for index in range(PALETTE_SIZE):
        hue = (index * _GOLDEN) % 1.0
        saturation, value = _LEVELS[index % len(_LEVELS)]
        red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
        colours.append((round(red * 255), round(green * 255), round(blue * 255)))
    palette = np.array(colours, dtype=np.uint8)
    palette.setflags(write=False)  # a constant: nobody may recolour it in place
    return palette


SEGMENT_PALETTE: np.ndarray = _make_palette()


def rank_regions(labels: np.ndarray) -> np.ndarray:
    """Renumber a label map with no background (HxW ints >= 0) by area: largest region 1, next 2, ...

    Ties in area keep label order.
    """
    areas = np.bincount(labels.ravel())
    present = np.flatnonzero(areas)
    order = present[np.argsort(-areas[present], kind="stable")]
    rank_of_label = np.zeros(len(areas), dtype=np.int32)
    rank_of_label[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return rank_of_label[labels]


def masks_to_ranked_labels(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Stack possibly overlapping boolean masks into a ranked label map (0 = no mask).

    Mask of rank r by area (0 = largest) gets label r + 1. Larger masks are laid down first and smaller
    ones on top, so small parts stay visible inside the large regions that contain them.
    """
    labels = np.zeros(shape, dtype=np.int32)
    order = sorted(range(len(masks)), key=lambda i: -int(np.count_nonzero(masks[i])))
    for rank, index in enumerate(order):
        labels[masks[index]] = rank + 1
    return labels


def colour_ranked(ranked: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 colours of a ranked label map: 0 black, label k SEGMENT_PALETTE[k - 1] (wrapping)."""
    lookup = np.zeros((int(ranked.max()) + 1, 3), dtype=np.uint8)
    ranks = np.arange(1, len(lookup))
    lookup[1:] = SEGMENT_PALETTE[(ranks - 1) % PALETTE_SIZE]
    return lookup[ranked]
