"""The extractor registry, options, sizing rule, canny and gray, and use from spawned worker processes."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np
import pytest
from PIL import Image

from controlsprint.conditions import (
    EXTRACTORS,
    ConditionResult,
    condition_size,
    extractor_names,
    get_extractor,
)
from controlsprint.errors import UserError
from controlsprint.imageio import load_image


@pytest.fixture(scope="module")
def hand_photo(photos) -> np.ndarray:
    return load_image(photos / "hand_thumb_up.jpg")  # 640 x 521


# ---- registry and options -------------------------------------------------------------------------


def test_registry_names_and_immutability():
    assert extractor_names() == ("canny", "segment", "hands", "pose", "face", "gray")
    with pytest.raises(TypeError):
        EXTRACTORS["mine"] = EXTRACTORS["canny"]  # type: ignore[index]
    assert extractor_names() == tuple(EXTRACTORS)


@pytest.mark.parametrize("name", ["canny", "segment", "hands", "pose", "face", "gray"])
def test_every_extractor_builds_fresh_with_its_name(name):
    first, second = get_extractor(name), get_extractor(name)
    assert first.name == name and first is not second


def test_unknown_extractor_is_a_user_error():
    with pytest.raises(UserError, match="unknown extractor 'cany'; known: canny, segment"):
        get_extractor("cany")


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        (
            "canny",
            {"low": 10},
            "canny: unknown option 'low'; did you mean 'blur'?|canny: unknown option 'low'",
        ),
        ("canny", {"low_treshold": 10}, "did you mean 'low_threshold'"),
        ("canny", {"blur": 4}, "blur=4 must be 0"),
        ("canny", {"blur": "3"}, "blur='3' must be int"),
        ("canny", {"low_threshold": 2.5}, "must be int"),
        ("canny", {"low_threshold": 250}, "high_threshold 200 is below low_threshold 250"),
        ("canny", {"low_threshold": -1}, "must be at least 0"),
        ("gray", {"blur": 3}, "gray: unknown option 'blur'; known options: none"),
        ("hands", {"min_confidence": 1.5}, "between 0.0 and 1.0"),
        ("hands", {"model_complexity": 2}, "model_complexity=2 must be between 0 and 1"),
        ("face", {"refine_landmarks": 1}, "must be bool"),
        ("segment", {"points_per_side": 0}, "points_per_side=0"),
    ],
)
def test_bad_options_are_user_errors(name, options, fragment):
    with pytest.raises(UserError, match=fragment):
        get_extractor(name, **options)


def test_options_accept_numpy_scalars_and_ints_for_floats():
    canny = get_extractor("canny", low_threshold=np.int64(50), high_threshold=np.int32(90))
    assert canny.options.low_threshold == 50 and type(canny.options.low_threshold) is int
    hands = get_extractor("hands", min_confidence=1, mirrored=np.bool_(True))
    assert hands.options.min_confidence == 1.0 and hands.options.mirrored is True


# ---- sizing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "resolution", "expected"),
    [
        (521, 640, None, (520, 640)),
        (521, 640, 512, (512, 632)),  # 640 * 512 / 521 = 628.9 -> 632
        (1358, 958, 512, (728, 512)),  # 1358 * 512 / 958 = 725.8 -> 728
        (625, 1024, 256, (256, 416)),  # 1024 * 256 / 625 = 419.4 -> 416
        (512, 512, 500, (504, 504)),  # the short side itself is rounded to 8
        (3, 5, None, (8, 8)),  # never below 8
    ],
)
def test_condition_size_rule(height, width, resolution, expected):
    assert condition_size(height, width, resolution) == expected


@pytest.mark.parametrize("resolution", [7, 0, -8, True, 256.0])
def test_bad_resolution_is_a_user_error(resolution):
    with pytest.raises(UserError, match="resolution"):
        condition_size(100, 100, resolution)


# ---- canny ----------------------------------------------------------------------------------------


def test_canny_is_binary_sized_right_and_equals_opencv(hand_photo):
    result = get_extractor("canny").extract(hand_photo, resolution=512)
    assert isinstance(result, ConditionResult) and result.landmarks is None
    edges = result.image
    assert edges.shape == (512, 632, 3) and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    resized = cv2.resize(hand_photo, (632, 512), interpolation=cv2.INTER_AREA)
    reference = cv2.Canny(resized, 100, 200)
    for channel in range(3):
        np.testing.assert_array_equal(edges[..., channel], reference)


def test_canny_thresholds_and_blur_change_the_edges_as_opencv_does(hand_photo):
    blurred = get_extractor("canny", low_threshold=50, high_threshold=120, blur=5)(hand_photo)
    assert blurred.shape == (520, 640, 3)
    resized = cv2.resize(hand_photo, (640, 520), interpolation=cv2.INTER_AREA)
    reference = cv2.Canny(cv2.GaussianBlur(resized, (5, 5), 0), 50, 120)
    np.testing.assert_array_equal(blurred[..., 0], reference)
    sharp = get_extractor("canny", low_threshold=50, high_threshold=120)(hand_photo)
    assert (sharp > 0).sum() > (blurred > 0).sum()  # blur removes texture edges


def test_canny_detect_resolution_stays_binary_at_the_output_size(hand_photo):
    edges = get_extractor("canny", detect_resolution=256)(hand_photo, resolution=512)
    assert edges.shape == (512, 632, 3)
    assert set(np.unique(edges)) == {0, 255}
    small = cv2.Canny(cv2.resize(hand_photo, (312, 256), interpolation=cv2.INTER_AREA), 100, 200)
    np.testing.assert_array_equal(
        edges[..., 0], cv2.resize(small, (632, 512), interpolation=cv2.INTER_NEAREST)
    )


def test_extractors_accept_pil_rgba_gray_and_paths(photos, hand_photo):
    canny = get_extractor("canny")
    expected = canny(hand_photo, resolution=256)
    np.testing.assert_array_equal(canny(Image.fromarray(hand_photo), resolution=256), expected)
    np.testing.assert_array_equal(canny(photos / "hand_thumb_up.jpg", resolution=256), expected)
    opaque = np.concatenate([hand_photo, np.full((*hand_photo.shape[:2], 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(canny(opaque, resolution=256), expected)
    gray_input = canny(hand_photo[..., 1], resolution=256)
    assert gray_input.shape == expected.shape and set(np.unique(gray_input)) <= {0, 255}
    with pytest.raises(UserError, match="shape"):
        canny(np.zeros((4, 4, 7), np.uint8))


# ---- gray -----------------------------------------------------------------------------------------


def test_gray_is_bt601_luma_in_three_equal_channels(hand_photo):
    gray = get_extractor("gray")(hand_photo)
    assert gray.shape == (520, 640, 3) and gray.dtype == np.uint8
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
    resized = cv2.resize(hand_photo, (640, 520), interpolation=cv2.INTER_AREA).astype(np.float64)
    luma = resized @ np.array([0.299, 0.587, 0.114])
    assert np.abs(gray[..., 0] - luma).max() <= 1.0


# ---- processes ------------------------------------------------------------------------------------


def _extract_in_worker(name: str, path: str) -> tuple[np.ndarray, list | None]:
    result = get_extractor(name).extract(load_image(path), resolution=256)
    return result.image, result.landmarks


def test_extractors_pickle_without_their_models(photos, hand_photo):
    hands = get_extractor("hands")
    before = hands.extract(hand_photo, resolution=256)
    assert hands._graph is not None
    clone = pickle.loads(pickle.dumps(hands))
    assert clone._graph is None and clone.options == hands.options
    after = clone.extract(hand_photo, resolution=256)
    np.testing.assert_array_equal(after.image, before.image)
    hands.close()
    assert hands._graph is None


def test_extractors_run_inside_spawned_worker_processes(photos):
    path = str(photos / "hand_thumb_up.jpg")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        canny_image, _ = pool.submit(_extract_in_worker, "canny", path).result(timeout=300)
        hands_image, hands_landmarks = pool.submit(_extract_in_worker, "hands", path).result(timeout=300)
    np.testing.assert_array_equal(canny_image, _extract_in_worker("canny", path)[0])
    local_image, local_landmarks = _extract_in_worker("hands", path)
    assert len(hands_landmarks) == len(local_landmarks) == 1
    np.testing.assert_array_equal(hands_image, local_image)


def test_condition_result_builds_landmarks_once_on_first_access_and_pickles_them():
    calls = []

    def build() -> list[dict]:
        calls.append(1)
        return [{"landmarks": [{"x": 0.5}]}]

    image = np.zeros((8, 8, 3), np.uint8)
    result = ConditionResult(image, landmarks=build, notice="n")
    assert calls == []  # nothing built for a caller that only wants the image
    assert result.landmarks == [{"landmarks": [{"x": 0.5}]}] and result.landmarks is result.landmarks
    assert calls == [1]
    clone = pickle.loads(
        pickle.dumps(ConditionResult(image, landmarks=build))
    )  # a local function: not picklable
    assert clone.landmarks == [{"landmarks": [{"x": 0.5}]}] and clone.notice is None
    np.testing.assert_array_equal(clone.image, image)
    assert ConditionResult(image).landmarks is None
