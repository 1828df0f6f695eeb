"""The controllability metrics (evaluation/metrics.py): a picture scores the maximum against its own
condition, and each metric falls when the picture stops following the condition."""

from __future__ import annotations

import numpy as np
import pytest

from controlsprint.conditions import get_extractor
from controlsprint.evaluation import metrics


def _two_colours_of_equal_brightness() -> np.ndarray:
    """Left half one colour, right half another, both with the same grayscale value: the edge
    between them is there in RGB and gone in gray."""
    import cv2

    image = np.zeros((64, 64, 3), np.uint8)
    image[:, :32] = (200, 40, 40)
    right = np.array([[(0, 0, 0)]], np.uint8)
    target = cv2.cvtColor(image[:1, :1], cv2.COLOR_RGB2GRAY)[0, 0]
    for green in range(256):  # a green-blue colour with the same luminance as the red one
        right[0, 0] = (0, green, 160)
        if abs(int(cv2.cvtColor(right, cv2.COLOR_RGB2GRAY)[0, 0]) - int(target)) <= 1:
            break
    image[:, 32:] = right[0, 0]
    image[20:44, 8:24] = (250, 250, 250)  # and a bright square, whose edges show in both
    return image


def test_tolerant_f1_matches_within_the_tolerance_only():
    line = np.zeros((32, 32), bool)
    line[:, 10] = True
    assert metrics.tolerant_f1(line, line, 2) == 1.0
    assert metrics.tolerant_f1(np.roll(line, 2, axis=1), line, 2) == 1.0
    assert metrics.tolerant_f1(np.roll(line, 5, axis=1), line, 2) == 0.0
    half = line.copy()
    half[16:] = False  # precision 1; recall 18/32 (rows 16 and 17 lie within 2 px of row 15)
    recall = 18 / 32
    assert metrics.tolerant_f1(half, line, 2) == pytest.approx(2 * recall / (1 + recall))
    assert metrics.tolerant_f1(np.zeros_like(line), np.zeros_like(line), 2) == 1.0


def test_canny_f1_of_a_picture_against_its_own_condition_is_one():
    image = _two_colours_of_equal_brightness()
    condition = get_extractor("canny")(image)
    assert condition[:, 30:34].max() == 255, "the colour edge is in the condition"
    assert metrics.canny_f1(condition, image) == 1.0
    flat = np.full_like(image, 128)
    assert metrics.canny_f1(condition, flat) == 0.0


def test_canny_f1_on_a_photo(photos):
    from controlsprint.imageio import load_image

    photo = load_image(photos / "cat.jpg")[:256, :256]
    condition = get_extractor("canny")(photo)
    assert metrics.canny_f1(condition, photo) == 1.0
    assert metrics.canny_f1(condition, np.ascontiguousarray(photo[:, ::-1])) < 0.5


def test_segment_miou_is_one_for_the_segmentation_itself_and_falls_when_regions_merge():
    segmentation = np.zeros((32, 32, 3), np.uint8)
    segmentation[:, 16:] = (255, 0, 0)
    segmentation[8:16, 4:12] = (0, 255, 0)
    assert metrics.segment_miou(segmentation, segmentation) == pytest.approx(1.0)
    merged = segmentation.copy()
    merged[8:16, 4:12] = 0  # the green square drawn as background
    assert metrics.segment_miou(segmentation, merged) < 0.75


def test_gray_psnr_known_values():
    gray = np.full((16, 16, 3), 100, np.uint8)
    assert metrics.gray_psnr(gray, gray) == float("inf")
    off_by_ten = np.full((16, 16, 3), 110, np.uint8)
    assert metrics.gray_psnr(gray, off_by_ten) == pytest.approx(10 * np.log10(255.0**2 / 100.0), abs=1e-6)


def test_metric_for_builds_the_extractor_once_and_scores_alike():
    image = _two_colours_of_equal_brightness()
    condition = get_extractor("canny")(image)
    canny = metrics.metric_for("canny")
    assert canny.keywords["extractor"].name == "canny"  # built once, reused for every image
    assert canny(condition, image) == metrics.canny_f1(condition, image) == 1.0
    assert metrics.metric_for("segment") is metrics.segment_miou
    assert metrics.metric_for("video") is None and metrics.metric_for(None) is None
