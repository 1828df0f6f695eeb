"""`canny`: OpenCV Canny edges, white on black, the classic ControlNet edge condition."""

from __future__ import annotations

import numpy as np

from controlsprint.conditions.base import (
    ConditionResult,
    Extractor,
    condition_size,
    gray_to_rgb,
    resize_labels,
    resize_rgb,
)


class CannyExtractor(Extractor):
    """Edges of the RGB image (OpenCV takes the strongest gradient over the three channels).

    The output holds only 0 and 255: when detection runs at another size than the output, the edge
    map is resized with nearest-neighbour so it stays binary.
    """

    name = "canny"

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        import cv2

        opts = self.options
        detect_size = size
        if opts.detect_resolution is not None:
            detect_size = condition_size(rgb.shape[0], rgb.shape[1], opts.detect_resolution)
        pixels = resize_rgb(rgb, detect_size)
        if opts.blur:
            pixels = cv2.GaussianBlur(pixels, (opts.blur, opts.blur), 0)
        edges = cv2.Canny(pixels, opts.low_threshold, opts.high_threshold)
        return ConditionResult(gray_to_rgb(resize_labels(edges, size)))
