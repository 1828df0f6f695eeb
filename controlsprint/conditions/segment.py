"""`segment`: automatic segmentation drawn as a colour map (regions coloured by area rank).

Two backends with one output format (see `palette.py` for the colours):
- SAM, when a model folder is given (`sam_model=DIR`, `--sam-model DIR`, or the environment variable
  CONTROLSPRINT_SAM_MODEL): transformers' SamModel with automatic mask generation (`sam.py`). Pixels no
  mask covers stay black.
- classical, otherwise: OpenCV's graph-based segmentation (Felzenszwalb-Huttenlocher, in
  cv2.ximgproc), offline and fast, no weights at all. Every pixel belongs to a region.
The result's `notice` says which backend ran.
"""

from __future__ import annotations

import os

import numpy as np

from controlsprint.conditions.base import (
    ConditionResult,
    Extractor,
    condition_size,
    resize_labels,
    resize_rgb,
)
from controlsprint.conditions.options import SAM_MODEL_ENV
from controlsprint.conditions.palette import colour_ranked, masks_to_ranked_labels, rank_regions


class SegmentExtractor(Extractor):
    """Colour map of automatic segments; SAM from a local folder, else the classical segmenter."""

    name = "segment"
    _lazy_attributes = ("_sam",)

    def __init__(self, **options):
        super().__init__(**options)
        # Resolved once, at construction, so one extractor never switches backend mid-run.
        folder = self.options.sam_model or os.environ.get(SAM_MODEL_ENV) or None
        if folder is not None:
            from controlsprint.conditions.sam import check_sam_folder

            self.sam_folder = check_sam_folder(folder)
            self.backend = "sam"
            self.notice = f"segment: SAM backend, transformers SamModel from {self.sam_folder}"
        else:
            self.sam_folder = None
            self.backend = "classical"
            self.notice = (
                "segment: classical offline backend (OpenCV graph segmentation); for SAM pass "
                f"--sam-model DIR or set {SAM_MODEL_ENV}"
            )

    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        opts = self.options
        detect_size = size
        if opts.detect_resolution is not None:
            detect_size = condition_size(rgb.shape[0], rgb.shape[1], opts.detect_resolution)
        pixels = resize_rgb(rgb, detect_size)
        if self.backend == "sam":
            ranked = masks_to_ranked_labels(self._sam_generator().masks(pixels), detect_size)
        else:
            ranked = rank_regions(classical_labels(pixels, opts.scale, opts.sigma, opts.min_region))
        return ConditionResult(colour_ranked(resize_labels(ranked, size)), notice=self.notice)

    def _sam_generator(self):
        if self._sam is None:
            from controlsprint.conditions.sam import SamMaskGenerator, SamSettings

            opts = self.options
            settings = SamSettings(
                points_per_side=opts.points_per_side,
                points_per_batch=opts.points_per_batch,
                pred_iou_thresh=opts.pred_iou_thresh,
                stability_score_thresh=opts.stability_score_thresh,
                nms_thresh=opts.nms_thresh,
                min_region=opts.min_region,
            )
            self._sam = SamMaskGenerator(self.sam_folder, settings)
        return self._sam


def classical_labels(rgb: np.ndarray, scale: float, sigma: float, min_region: float) -> np.ndarray:
    """Graph-based segmentation label map (HxW int32, labels 0..n-1) of an RGB image."""
    import cv2

    min_size = max(1, int(min_region * rgb.shape[0] * rgb.shape[1]))
    segmenter = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=sigma, k=scale, min_size=min_size)
    return segmenter.processImage(rgb).astype(np.int32, copy=False)
