"""The real SAM backend of `segment`: automatic mask generation with transformers' torch `SamModel`.

The model comes from a local folder in the transformers layout (config.json with model_type "sam",
preprocessor_config.json, weights as model.safetensors or a sharded safetensors index), for example a
copy of facebook/sam-vit-base. Nothing is downloaded, pickled weights (pytorch_model.bin) are refused,
and no remote code runs.

We drive `SamModel` + `SamImageProcessor` ourselves instead of `pipeline("mask-generation")`: the
pipeline's final de-duplication calls torchvision, which is not part of this stack. The algorithm is
SAM's automatic mask generator: prompt with a regular grid of points (one foreground point each,
three candidate masks per point), keep masks whose predicted IoU and stability score pass their
thresholds, drop near-duplicates by box non-maximum suppression, drop tiny masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from controlsprint.errors import UserError

PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")


def check_sam_folder(folder: str | Path) -> Path:
    """The folder as a Path once it looks like a loadable SAM checkpoint; a UserError saying why not."""
    path = Path(folder).expanduser()
    label = f"SAM model folder {path}"
    if not path.exists():
        raise UserError(f"{label}: no such directory")
    if not path.is_dir():
        raise UserError(f"{label}: not a directory (give the folder holding config.json)")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise UserError(f"{label}: no config.json")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
        raise UserError(f"{label}: config.json is not a JSON object ({err})") from None
    if model_type != "sam":
        raise UserError(f"{label}: config.json has model_type {model_type!r}, expected 'sam'")
    has_safetensors = (path / "model.safetensors").is_file() or (
        path / "model.safetensors.index.json"
    ).is_file()
    if not has_safetensors:
        pickled = [name for name in PICKLE_WEIGHT_FILES if (path / name).exists()]
        if pickled:
            raise UserError(
                f"{label}: only pickled weights ({', '.join(pickled)}); controlsprint never loads pickles, "
                "convert them to model.safetensors"
            )
        raise UserError(f"{label}: no weights (model.safetensors)")
    if not (path / "preprocessor_config.json").is_file():
        raise UserError(f"{label}: no preprocessor_config.json (the SamProcessor settings)")
    return path


@dataclass(frozen=True)
class SamSettings:
    points_per_side: int
    points_per_batch: int
    pred_iou_thresh: float
    stability_score_thresh: float
    nms_thresh: float
    min_region: float


class SamMaskGenerator:
    """Loads the model once; `masks(rgb)` returns boolean HxW masks for one image."""

    def __init__(self, folder: Path, settings: SamSettings):
        import torch
        from safetensors import SafetensorError
        from transformers import SamModel, SamProcessor

        self.settings = settings
        self._torch = torch
        try:
            self.model = SamModel.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval()
            self.processor = SamProcessor.from_pretrained(folder, local_files_only=True).image_processor
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as err:
            raise UserError(
                f"SAM model folder {folder}: cannot load ({' '.join(str(err).split())})"
            ) from None

    def masks(self, rgb: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        settings = self.settings
        height, width = rgb.shape[:2]
        inputs = self.processor(images=rgb, return_tensors="pt")
        resized_height, resized_width = (int(v) for v in inputs["reshaped_input_sizes"][0])
        with torch.inference_mode():
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"])
        # Grid of cell centres in model-input pixel coordinates.
        centres = (np.arange(settings.points_per_side) + 0.5) / settings.points_per_side
        grid_x, grid_y = np.meshgrid(centres * resized_width, centres * resized_height)
        points = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32)

        kept_masks, kept_scores = [], []
        for start in range(0, len(points), settings.points_per_batch):
            batch = torch.from_numpy(points[start : start + settings.points_per_batch])[None, :, None, :]
            labels = torch.ones(batch.shape[:3], dtype=torch.long)
            with torch.inference_mode():
                out = self.model(image_embeddings=embeddings, input_points=batch, input_labels=labels)
            low_res = out.pred_masks[0].flatten(0, 1)  # (points * 3, h, w) logits
            scores = out.iou_scores[0].flatten()
            good = scores > settings.pred_iou_thresh
            if not bool(good.any()):
                continue
            logits = self.processor.post_process_masks(
                [low_res[good][None]],
                inputs["original_sizes"],
                inputs["reshaped_input_sizes"],
                binarize=False,
            )[0][0]  # (n, height, width) at the image size
            stable = _stability(logits) >= settings.stability_score_thresh
            kept_masks.extend(m for m in (logits[stable] > 0).numpy())
            kept_scores.extend(scores[good][stable].tolist())
        min_area = settings.min_region * height * width
        candidates = [
            (m, s) for m, s in zip(kept_masks, kept_scores, strict=True) if m.sum() >= max(min_area, 1)
        ]
        keep = box_nms([m for m, _ in candidates], np.array([s for _, s in candidates]), settings.nms_thresh)
        return [candidates[i][0] for i in keep]


def _stability(logits):
    """SAM's stability score: area above logit +1 over area above logit -1 (one mask is inside the other)."""
    strict = (logits > 1.0).flatten(1).sum(1)
    loose = (logits > -1.0).flatten(1).sum(1).clamp(min=1)
    return strict / loose


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive bounds of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])


def box_nms(masks: list[np.ndarray], scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of masks kept by greedy non-maximum suppression on their bounding boxes, best first."""
    if not masks:
        return []
    boxes = np.array([mask_box(m) for m in masks], dtype=np.float64)
    areas = (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(masks), dtype=bool)
    for index in order:
        if suppressed[index]:
            continue
        keep.append(int(index))
        x0 = np.maximum(boxes[index, 0], boxes[:, 0])
        y0 = np.maximum(boxes[index, 1], boxes[:, 1])
        x1 = np.minimum(boxes[index, 2], boxes[:, 2])
        y1 = np.minimum(boxes[index, 3], boxes[:, 3])
        overlap = np.clip(x1 - x0 + 1, 0, None) * np.clip(y1 - y0 + 1, 0, None)
        iou = overlap / (areas[index] + areas - overlap)
        suppressed |= iou > threshold
    return keep
