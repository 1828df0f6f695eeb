"""`gray`: the grayscale image as a 3-channel condition, for colorization ControlNets."""

from __future__ import annotations

import numpy as np

from controlsprint.conditions.base import ConditionResult, Extractor, gray_to_rgb, resize_rgb


class GrayExtractor(Extractor):
    """ITU-R BT.601 luma (OpenCV's RGB2GRAY: 0.299 R + 0.587 G + 0.114 B) repeated into R, G and B."""

    name = "gray"

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        import cv2

        luma = cv2.cvtColor(resize_rgb(rgb, size), cv2.COLOR_RGB2GRAY)
        return ConditionResult(gray_to_rgb(luma))
