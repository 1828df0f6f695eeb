"""The dataset format's small parts: column rule, PNG codec, rejects log, manifest checks."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from controlsprint.data import format as fmt
from controlsprint.data.codec import decode_rgb, encode_png
from controlsprint.errors import UserError


def test_condition_column_rule():
    assert fmt.condition_columns(["canny"]) == {"canny": "conditioning_image"}
    assert fmt.image_columns(["canny"]) == ["image", "conditioning_image"]
    assert fmt.condition_columns(["hands", "canny"]) == {
        "hands": "conditioning_image_hands",
        "canny": "conditioning_image_canny",
    }
    assert fmt.image_columns(["hands", "canny"]) == [
        "image",
        "conditioning_image",
        "conditioning_image_hands",
        "conditioning_image_canny",
    ]
    with pytest.raises(UserError, match="listed twice"):
        fmt.condition_columns(["canny", "canny"])


def test_png_round_trip_and_gray_images_stored_with_one_channel():
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    gray = np.repeat(rng.integers(0, 256, (40, 56, 1), dtype=np.uint8), 3, axis=2)
    almost_gray = gray.copy()
    almost_gray[39, 55, 2] ^= 1  # one pixel off, outside the sparse sample: still must stay colour
    for image, channels in ((colour, 3), (gray, 1), (almost_gray, 3)):
        data = encode_png(image)
        np.testing.assert_array_equal(decode_rgb(data), image)
        stored = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert (stored.ndim == 2 and channels == 1) or stored.shape[2] == channels
    assert decode_rgb(b"") is None and decode_rgb(b"not a png") is None


def test_rejects_log_survives_a_torn_line_and_keeps_finished_shards(tmp_path):
    fmt.append_rejects(tmp_path, [{"input": 0, "shard": 0}, {"input": 5, "shard": 2}])
    with open(tmp_path / fmt.REJECTS_NAME, "a") as handle:
        handle.write('{"input": 7, "sha')  # a crash mid-write
    assert [r["input"] for r in fmt.read_rejects(tmp_path)] == [0, 5]
    fmt.keep_rejects_of_shards(tmp_path, {0})
    assert [json.loads(line)["input"] for line in (tmp_path / fmt.REJECTS_NAME).read_text().splitlines()] == [
        0
    ]


def test_manifest_checks_name_the_file(tmp_path):
    (tmp_path / fmt.MANIFEST_NAME).write_text("{not json")
    with pytest.raises(UserError, match="manifest.json is not valid JSON"):
        fmt.load_manifest(tmp_path)
    (tmp_path / fmt.MANIFEST_NAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UserError, match="is not a controlsprint-dataset manifest"):
        fmt.load_manifest(tmp_path)
    (tmp_path / fmt.MANIFEST_NAME).write_text(json.dumps({"format": fmt.FORMAT_NAME, "format_version": 99}))
    with pytest.raises(UserError, match="format_version 99"):
        fmt.load_manifest(tmp_path)
