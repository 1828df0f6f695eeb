"""`segment`: the classical offline backend, the palette, and the SAM backend on a tiny random SamModel."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from controlsprint.conditions import get_extractor
from controlsprint.conditions.options import SAM_MODEL_ENV
from controlsprint.conditions.palette import (
    PALETTE_SIZE,
    SEGMENT_PALETTE,
    colour_ranked,
    masks_to_ranked_labels,
    rank_regions,
)
from controlsprint.conditions.sam import box_nms, check_sam_folder
from controlsprint.errors import UserError
from controlsprint.imageio import load_image


def _colour_counts(image: np.ndarray) -> dict[tuple[int, int, int], int]:
    colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
    return {tuple(int(v) for v in c): int(n) for c, n in zip(colours, counts, strict=True)}


PALETTE_RANK = {tuple(int(v) for v in colour): rank for rank, colour in enumerate(SEGMENT_PALETTE)}


# ---- palette and ranking --------------------------------------------------------------------------


def test_palette_is_fixed_distinct_never_black_and_read_only():
    assert SEGMENT_PALETTE.shape == (PALETTE_SIZE, 3) and SEGMENT_PALETTE.dtype == np.uint8
    assert len(PALETTE_RANK) == PALETTE_SIZE
    assert SEGMENT_PALETTE.max(axis=1).min() > 100  # every colour is clearly not black
    with pytest.raises(ValueError):
        SEGMENT_PALETTE[0] = 0


def test_rank_regions_orders_labels_by_area():
    labels = np.array([[5, 5, 5, 0], [2, 2, 5, 0], [2, 5, 5, 7]])  # areas: 5 -> 6, 2 -> 3, 0 -> 2, 7 -> 1
    ranked = rank_regions(labels)
    np.testing.assert_array_equal(ranked, [[1, 1, 1, 3], [2, 2, 1, 3], [2, 1, 1, 4]])
    colours = colour_ranked(ranked)
    assert tuple(colours[0, 0]) == tuple(SEGMENT_PALETTE[0]) and tuple(colours[2, 3]) == tuple(
        SEGMENT_PALETTE[3]
    )


def test_overlapping_masks_small_on_top_and_ranked_by_full_area():
    big = np.zeros((6, 6), bool)
    big[:, :] = True
    small = np.zeros((6, 6), bool)
    small[1:3, 1:3] = True
    medium = np.zeros((6, 6), bool)
    medium[3:, 3:] = True
    ranked = masks_to_ranked_labels([small, big, medium], (6, 6))
    assert ranked[0, 0] == 1 and ranked[1, 1] == 3 and ranked[4, 4] == 2
    assert colour_ranked(np.zeros((2, 2), np.int32)).max() == 0  # no mask: black


def test_box_nms_drops_near_duplicates_keeps_distinct():
    a = np.zeros((10, 10), bool)
    a[0:5, 0:5] = True
    a_again = a.copy()
    a_again[0:5, 5] = True  # box IoU 25/30 with a
    b = np.zeros((10, 10), bool)
    b[6:, 6:] = True
    assert box_nms([a, a_again, b], np.array([0.9, 0.95, 0.5]), 0.7) == [1, 2]
    assert box_nms([a, a_again, b], np.array([0.9, 0.95, 0.5]), 0.9) == [1, 0, 2]
    assert box_nms([], np.array([]), 0.7) == []


# ---- classical backend ----------------------------------------------------------------------------


@pytest.mark.parametrize("photo", ["cat.jpg", "dinner_table.jpg", "business_person.png"])
def test_classical_segmentation_has_regions_coloured_by_rank(photos, photo, monkeypatch):
    monkeypatch.delenv(SAM_MODEL_ENV, raising=False)
    extractor = get_extractor("segment")
    result = extractor.extract(load_image(photos / photo), resolution=256)
    assert "classical" in result.notice and result.landmarks is None
    counts = _colour_counts(result.image)
    assert len(counts) > 1
    assert all(colour in PALETTE_RANK for colour in counts)  # every pixel belongs to a region
    ranks = sorted(PALETTE_RANK[colour] for colour in counts)
    assert ranks == list(range(len(ranks)))  # ranks 0..n-1, no gaps
    by_rank = [counts[tuple(int(v) for v in SEGMENT_PALETTE[rank])] for rank in ranks]
    assert by_rank == sorted(by_rank, reverse=True)  # larger regions get earlier colours
    np.testing.assert_array_equal(extractor(load_image(photos / photo), resolution=256), result.image)


def test_classical_options_change_the_segmentation(photos, monkeypatch):
    monkeypatch.delenv(SAM_MODEL_ENV, raising=False)
    photo = load_image(photos / "cat.jpg")
    fine = len(_colour_counts(get_extractor("segment", scale=100.0, min_region=0.001)(photo, resolution=256)))
    coarse = len(
        _colour_counts(get_extractor("segment", scale=2000.0, min_region=0.02)(photo, resolution=256))
    )
    assert fine > coarse > 1
    detected_small = get_extractor("segment", detect_resolution=128)(photo, resolution=256)
    assert detected_small.shape == (256, 416, 3)
    assert all(colour in PALETTE_RANK for colour in _colour_counts(detected_small))


# ---- SAM backend ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    """A tiny random SamModel saved as safetensors with a 64-pixel SamProcessor: nothing downloaded."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SamConfig(
        vision_config={
            "hidden_size": 16,
            "output_channels": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
            "window_size": 2,
            "global_attn_indexes": [1],
            "num_pos_feats": 8,
            "mlp_dim": 32,
        },
        prompt_encoder_config={
            "hidden_size": 16,
            "image_size": 64,
            "patch_size": 16,
            "mask_input_channels": 4,
        },
        mask_decoder_config={
            "hidden_size": 16,
            "mlp_dim": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": 16,
        },
    )
    folder = tmp_path_factory.mktemp("tiny_sam")
    transformers.SamModel(config).eval().save_pretrained(folder, safe_serialization=True)
    image_processor = transformers.SamImageProcessor(
        size={"longest_edge": 64}, pad_size={"height": 64, "width": 64}
    )
    transformers.SamProcessor(image_processor=image_processor).save_pretrained(folder)
    assert (folder / "model.safetensors").is_file() and not (folder / "pytorch_model.bin").exists()
    return folder


LOOSE = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_region": 0.0}


def test_sam_backend_runs_from_a_local_folder(tiny_sam, photos):
    photo = load_image(photos / "cat.jpg")
    extractor = get_extractor("segment", sam_model=tiny_sam, points_per_side=4, **LOOSE)  # a Path works too
    assert extractor.options.sam_model == str(tiny_sam)
    result = extractor.extract(photo, resolution=128)
    assert result.notice.startswith("segment: SAM backend") and str(tiny_sam) in result.notice
    assert result.image.shape == (128, 208, 3) and result.image.dtype == np.uint8
    colours = _colour_counts(result.image)
    assert set(colours) - {(0, 0, 0)}, "the tiny model should yield at least one mask"
    assert all(colour in PALETTE_RANK or colour == (0, 0, 0) for colour in colours)
    assert extractor._sam is not None  # loaded once, kept for the next call
    model = extractor._sam.model
    extractor.extract(photo, resolution=128)
    assert extractor._sam.model is model


def test_sam_masks_equal_transformers_processor_reference(tiny_sam, photos):
    # One prompt in the image centre; thresholds off: the extractor must draw exactly the masks that
    # SamProcessor (its own coordinate scaling and mask post-processing) and SamModel give for it.
    import torch
    from transformers import SamModel, SamProcessor

    photo = np.asarray(Image.fromarray(load_image(photos / "cat.jpg")).resize((208, 128), Image.BILINEAR))
    model = SamModel.from_pretrained(tiny_sam, use_safetensors=True).eval()
    processor = SamProcessor.from_pretrained(tiny_sam)
    inputs = processor(images=photo, input_points=[[[104.0, 64.0]]], return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    masks = processor.post_process_masks(
        outputs.pred_masks, inputs["original_sizes"], inputs["reshaped_input_sizes"]
    )
    masks = masks[0][0].numpy()  # (3, 128, 208) bool
    scores = outputs.iou_scores[0, 0].numpy()
    kept = [m for m, s in zip(masks, scores, strict=True) if s > 0.0 and m.any()]
    assert kept, "seeded tiny model must give at least one mask for the reference to mean something"
    expected = colour_ranked(masks_to_ranked_labels(kept, photo.shape[:2]))

    extractor = get_extractor("segment", sam_model=str(tiny_sam), points_per_side=1, nms_thresh=1.0, **LOOSE)
    np.testing.assert_array_equal(extractor(photo), expected)


def test_sam_folder_from_environment_variable(tiny_sam, monkeypatch):
    monkeypatch.setenv(SAM_MODEL_ENV, str(tiny_sam))
    assert get_extractor("segment").backend == "sam"
    monkeypatch.setenv(SAM_MODEL_ENV, str(tiny_sam / "missing"))
    with pytest.raises(UserError, match="no such directory"):
        get_extractor("segment")
    monkeypatch.delenv(SAM_MODEL_ENV)
    assert get_extractor("segment").backend == "classical"


def _folder(tmp_path, files: dict[str, str | bytes]):
    folder = tmp_path / "sam"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


SAM_CONFIG = json.dumps({"model_type": "sam"})


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({}, "no config.json"),
        ({"config.json": "{not json"}, "not a JSON object"),
        ({"config.json": json.dumps({"model_type": "clip"})}, "model_type 'clip', expected 'sam'"),
        ({"config.json": SAM_CONFIG}, r"no weights \(model.safetensors\)"),
        ({"config.json": SAM_CONFIG, "pytorch_model.bin": b"\x80\x02pickle"}, "only pickled weights"),
        ({"config.json": SAM_CONFIG, "model.safetensors": b"x"}, "no preprocessor_config.json"),
    ],
)
def test_bad_sam_folders_are_user_errors(tmp_path, files, fragment):
    folder = _folder(tmp_path, files)
    with pytest.raises(UserError, match=fragment):
        check_sam_folder(folder)
    with pytest.raises(UserError, match=fragment):
        get_extractor("segment", sam_model=str(folder))


def test_sam_folder_that_is_missing_or_a_file(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        check_sam_folder(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        check_sam_folder(tmp_path / "file")


def test_corrupt_safetensors_is_a_user_error_on_first_use(tiny_sam, tmp_path, photos):
    folder = tmp_path / "corrupt"
    folder.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        (folder / name).write_bytes((tiny_sam / name).read_bytes())
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    extractor = get_extractor("segment", sam_model=str(folder))
    with pytest.raises(UserError, match="cannot load"):
        extractor(load_image(photos / "cat.jpg"), resolution=64)
