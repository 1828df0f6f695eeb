"""MediaPipe hands, pose and face on the real photos: found where they are, absent where they are not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controlsprint.conditions import get_extractor
from controlsprint.conditions.pose import KEYPOINT_COLOURS, openpose_keypoints
from controlsprint.imageio import load_image


@pytest.fixture(scope="module")
def load(photos):
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_image(photos / name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def hands():
    extractor = get_extractor("hands")
    yield extractor
    extractor.close()


@pytest.fixture(scope="module")
def pose():
    extractor = get_extractor("pose")
    yield extractor
    extractor.close()


@pytest.fixture(scope="module")
def face():
    extractor = get_extractor("face")
    yield extractor
    extractor.close()


def _assert_records_in_bounds(records: list[dict], image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for record in records:
        assert 0.0 <= record["x"] <= 1.0 and 0.0 <= record["y"] <= 1.0, record
        assert 0.0 <= record["px"] < width and 0.0 <= record["py"] < height, record
        assert record["px"] == pytest.approx(record["x"] * width, abs=0.01)
        assert record["py"] == pytest.approx(record["y"] * height, abs=0.01)


def _assert_drawn_near(image: np.ndarray, records: list[dict], radius: int = 3) -> None:
    """Every landmark has a drawn (non-black) pixel within `radius`; far from all of them is black."""
    lit = image.any(axis=2)
    for record in records:
        x, y = int(record["px"]), int(record["py"])
        assert lit[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1].any(), record
    xs = [r["px"] for r in records]
    ys = [r["py"] for r in records]
    margin = 12
    outside = lit.copy()
    outside[
        max(0, int(min(ys)) - margin) : int(max(ys)) + margin,
        max(0, int(min(xs)) - margin) : int(max(xs)) + margin,
    ] = False
    assert not outside.any()


# ---- hands ----------------------------------------------------------------------------------------


def test_hand_found_on_thumb_up_with_landmarks_in_bounds(hands, load):
    result = hands.extract(load("hand_thumb_up.jpg"), resolution=512)
    image = result.image
    assert image.shape == (512, 632, 3) and image.dtype == np.uint8
    assert len(result.landmarks) == 1
    hand = result.landmarks[0]
    assert hand["handedness"] in {"Left", "Right"} and 0.5 <= hand["score"] <= 1.0
    records = hand["landmarks"]
    assert len(records) == 21
    assert (
        records[0]["name"] == "wrist"
        and records[4]["name"] == "thumb_tip"
        and records[20]["name"] == "pinky_tip"
    )
    _assert_records_in_bounds(records, image)
    _assert_drawn_near(image, records)
    # thumb up: the thumb tip is the highest point of the hand
    assert records[4]["py"] == min(r["py"] for r in records)
    json.dumps(result.landmarks)  # JSON-ready


def test_handedness_is_swapped_unless_the_input_is_mirrored(hands, load):
    photo = load("hand_thumb_up.jpg")
    plain = hands.extract(photo, resolution=256).landmarks[0]["handedness"]
    mirrored_extractor = get_extractor("hands", mirrored=True)
    mirrored = mirrored_extractor.extract(photo, resolution=256).landmarks[0]["handedness"]
    assert {plain, mirrored} == {"Left", "Right"}
    # flipping the photo left-right turns the hand into the other hand
    flipped = hands.extract(np.ascontiguousarray(photo[:, ::-1]), resolution=256).landmarks[0]["handedness"]
    assert flipped == mirrored


def test_no_hand_on_the_cat(hands, load):
    result = hands.extract(load("cat.jpg"), resolution=512)
    assert result.landmarks == []
    assert result.image.shape == (512, 840, 3) and not result.image.any()


def test_hands_keep_the_input_size_by_default(hands, load):
    assert hands(load("two_thumbs_up.jpg")).shape == (424, 640, 3)  # 427 -> 424


# ---- pose -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("photo", ["business_person.png", "couple_and_dog.jpg"])
def test_pose_found_on_people(pose, load, photo):
    result = pose.extract(load(photo), resolution=512)
    assert len(result.landmarks) == 1
    records = result.landmarks[0]["landmarks"]
    assert len(records) == 33 and records[0]["name"] == "nose" and records[11]["name"] == "left_shoulder"
    nose = records[0]
    assert nose["visibility"] > 0.9
    assert records[11]["py"] > nose["py"] and records[12]["py"] > nose["py"]  # shoulders below the nose
    visible = [r for r in records if r["visibility"] > 0.9]
    _assert_records_in_bounds(visible, result.image)
    # the nose is drawn as an OpenPose keypoint: a dot in keypoint colour 0
    height, width = result.image.shape[:2]
    centre = result.image[min(int(round(nose["py"])), height - 1), min(int(round(nose["px"])), width - 1)]
    assert tuple(centre) == KEYPOINT_COLOURS[0]


def test_no_pose_on_the_cat(pose, load):
    result = pose.extract(load("cat.jpg"), resolution=256)
    assert result.landmarks == [] and not result.image.any()


def test_openpose_keypoints_neck_and_visibility():
    pixels = np.array([(float(i), float(2 * i)) for i in range(33)])
    visibility = np.ones(33)
    visibility[7] = 0.1  # left ear hidden
    keypoints = openpose_keypoints(pixels, visibility, min_visibility=0.5)
    assert len(keypoints) == 18
    assert keypoints[0] == (0.0, 0.0)  # nose
    assert keypoints[1] == (11.5, 23.0)  # neck: midpoint of shoulders 11 and 12
    assert keypoints[2] == (12.0, 24.0)  # right shoulder is MediaPipe 12
    assert keypoints[17] is None  # left ear below the visibility threshold
    visibility[12] = 0.0
    assert (
        openpose_keypoints(pixels, visibility, min_visibility=0.5)[1] is None
    )  # no neck without both shoulders


# ---- face -----------------------------------------------------------------------------------------


def test_face_found_on_business_person(face, load):
    result = face.extract(load("business_person.png"), resolution=512)
    image = result.image
    assert image.shape == (728, 512, 3)
    assert len(result.landmarks) == 1
    records = result.landmarks[0]["landmarks"]
    assert len(records) == 478  # 468 mesh points + 10 iris points
    _assert_records_in_bounds(records, image)
    assert max(r["py"] for r in records) < image.shape[0] / 2  # the face is in the upper half
    white = (image == 255).all(axis=2)  # the face oval is drawn white
    assert white.sum() > 100
    lit = image.any(axis=2)
    ys, xs = np.nonzero(lit)
    assert xs.min() >= min(r["px"] for r in records) - 3 and xs.max() <= max(r["px"] for r in records) + 3


def test_face_without_iris_refinement_has_468_landmarks(load):
    extractor = get_extractor("face", refine_landmarks=False)
    result = extractor.extract(load("business_person.png"), resolution=256)
    assert len(result.landmarks[0]["landmarks"]) == 468


def test_no_face_on_the_cat(face, load):
    result = face.extract(load("cat.jpg"), resolution=256)
    assert result.landmarks == [] and not result.image.any()


def test_edge_chains_cover_every_edge_exactly_once():
    from mediapipe.python.solutions import face_mesh_connections

    from controlsprint.conditions.drawing import edge_chains

    cases = [
        (face_mesh_connections.FACEMESH_FACE_OVAL, 1),  # one closed contour
        (face_mesh_connections.FACEMESH_LIPS, 2),  # outer and inner lip
        ({(0, 1), (1, 2), (5, 6)}, 2),  # two separate open paths
    ]
    for edges, expected_chains in cases:
        chains = edge_chains(sorted(edges))
        walked = [
            frozenset(map(int, pair)) for chain in chains for pair in zip(chain[:-1], chain[1:], strict=True)
        ]
        assert len(walked) == len(edges) and set(walked) == {frozenset(edge) for edge in edges}
        assert len(chains) == expected_chains
