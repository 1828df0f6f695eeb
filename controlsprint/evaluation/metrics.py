"""Controllability metrics, ControlNet++-style: how well a generated image follows its condition.

Each takes the condition (HxWx3 uint8, as fed to the ControlNet) and the generated image (same
size) and returns a float where higher is better:
  canny    F1 between the condition's edges and the canny extractor run on the output, 2-pixel
           tolerance
  segment  mIoU between the condition's regions and the output clustered by colour into as many
           regions (nearest region-mean colour)
  gray     PSNR (dB) of the output's grayscale against the condition
  hands    F1 of skeleton pixels: the hands extractor run on the output vs the condition, 3 px
"""

from __future__ import annotations

import functools

import numpy as np


def _within(mask: np.ndarray, reference: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels of `mask` that lie within `tolerance` pixels of a pixel of `reference`."""
    import cv2

    if not reference.any():
        return np.zeros_like(mask, dtype=bool)
    distance = cv2.distanceTransform((~reference).astype(np.uint8), cv2.DIST_L2, 3)
    return mask & (distance <= tolerance)


def tolerant_f1(predicted: np.ndarray, target: np.ndarray, tolerance: int) -> float:
    """F1 of two binary masks where a pixel counts as matched within `tolerance` pixels."""
    predicted, target = predicted.astype(bool), target.astype(bool)
    if not predicted.any() and not target.any():
        return 1.0
    if not predicted.any() or not target.any():
        return 0.0
    precision = _within(predicted, target, tolerance).sum() / predicted.sum()
    recall = _within(target, predicted, tolerance).sum() / target.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def canny_f1(condition: np.ndarray, generated: np.ndarray, tolerance: int = 2, *, extractor=None) -> float:
    # The very extractor that made the condition: OpenCV's Canny on RGB takes the strongest gradient
    # over the channels, so running it on a grayscale copy instead (as this metric once did) missed
    # the edges between colours of equal brightness and scored the true pictures 0.69, not 1.
    from controlsprint.conditions import get_extractor

    edges = (extractor or get_extractor("canny"))(generated)
    return tolerant_f1(edges.max(axis=-1) > 127, condition.max(axis=-1) > 127, tolerance)


def region_labels(segmentation: np.ndarray) -> np.ndarray:
    """Connected regions of equal colour in a segmentation map, as int labels (0..n-1)."""
    import cv2

    colours, inverse = np.unique(segmentation.reshape(-1, 3), axis=0, return_inverse=True)
    inverse = inverse.reshape(segmentation.shape[:2])
    labels = np.zeros(segmentation.shape[:2], np.int32)
    next_label = 0
    for index in range(len(colours)):
        count, components = cv2.connectedComponents((inverse == index).astype(np.uint8), connectivity=4)
        for component in range(1, count):
            labels[components == component] = next_label
            next_label += 1
    return labels


def segment_miou(condition: np.ndarray, generated: np.ndarray, min_area: int = 16) -> float:
    labels = region_labels(condition)
    regions = [r for r in range(labels.max() + 1) if (labels == r).sum() >= min_area]
    pixels = generated.reshape(-1, 3).astype(np.float32)
    flat = labels.reshape(-1)
    centroids = np.stack([pixels[flat == r].mean(axis=0) for r in regions])
    assigned = np.asarray(regions)[np.argmin(((pixels[:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    ious = []
    for region in regions:
        truth, predicted = flat == region, assigned == region
        ious.append((truth & predicted).sum() / max(1, (truth | predicted).sum()))
    return float(np.mean(ious))


def gray_psnr(condition: np.ndarray, generated: np.ndarray) -> float:
    import cv2

    gray = cv2.cvtColor(generated, cv2.COLOR_RGB2GRAY).astype(np.float64)
    target = condition.astype(np.float64).mean(axis=-1)
    mse = np.mean((gray - target) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def hands_f1(condition: np.ndarray, generated: np.ndarray, tolerance: int = 3, *, extractor=None) -> float:
    from controlsprint.conditions import get_extractor

    extractor = extractor or get_extractor("hands")
    drawn = extractor(generated)
    return tolerant_f1(drawn.max(axis=-1) > 0, condition.max(axis=-1) > 0, tolerance)


METRICS = {"canny": canny_f1, "segment": segment_miou, "gray": gray_psnr, "hands": hands_f1}
UNITS = {"canny": "F1", "segment": "mIoU", "gray": "PSNR dB", "hands": "skeleton F1"}


def metric_for(name: str):
    """`name`'s metric as f(condition, generated), or None when there is none. The metrics that run an
    extractor on the output (canny, hands) get one built here, once, instead of one per image
    (MediaPipe's graph takes about a second to build)."""
    metric = METRICS.get(name)
    if name in ("canny", "hands"):
        from controlsprint.conditions import get_extractor

        return functools.partial(metric, extractor=get_extractor(name))
    return metric
