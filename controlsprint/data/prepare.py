"""`controlsprint prepare` as a pipeline job: run the condition extractors over real images.

Per input: `load_image` (orientation, alpha, bit depth normalised; bad files become rejects with the
loader's one-line reason), the picture resized by the extractors' sizing rule (short side =
--resolution, sides rounded to multiples of 8) and stored as PNG, then every extractor on that stored
picture, so condition and picture line up pixel for pixel. Landmarks of the
hands/pose/face extractors go to the `landmarks` column (JSON: {condition: records}).

Images where the hands extractor finds no hand: `--empty-hands blank` keeps them with a black hands
condition (useful negatives); `--empty-hands skip` leaves them out and lists them in rejects.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlsprint.data.pipeline import ChunkResult, Job
from controlsprint.data.sources import ImageFolder, Item, TableDataset
from controlsprint.errors import UserError

PREPARE_COLUMNS = {"source": "string", "landmarks": "string"}
EMPTY_HANDS_POLICIES = ("blank", "skip")


@dataclass
class PrepareWorker:
    """Turns items into rows; unpickled once per worker process, where it builds its extractors once."""

    conditions: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]]  # per condition: extractor keyword options
    resolution: int | None
    max_pixels: int | None
    empty_hands: str
    _extractors: dict = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractors": {}}

    def _extractor(self, name: str):
        if name not in self._extractors:
            from controlsprint.conditions import get_extractor

            self._extractors[name] = get_extractor(name, **self.options.get(name, {}))
        return self._extractors[name]

    def row(self, item: Item) -> dict:
        """One row, or raises UserError with the reason the input is rejected."""
        from controlsprint.conditions.base import condition_size, resize_rgb
        from controlsprint.data.codec import encode_png
        from controlsprint.imageio import load_image

        rgb = load_image(
            item.data if isinstance(item.data, str) else bytes(item.data), max_pixels=self.max_pixels
        )
        size = condition_size(rgb.shape[0], rgb.shape[1], self.resolution)
        picture = resize_rgb(rgb, size)
        conditions, landmarks = {}, {}
        for name in self.conditions:
            # On the stored picture itself (its sides are multiples of 8, so no further resize): the
            # condition is exactly what the extractor gives for the training image, and the picture
            # is resized once instead of once per extractor.
            result = self._extractor(name).extract(picture, resolution=None)
            if result.image.shape[:2] != size:
                raise RuntimeError(f"{name} returned {result.image.shape[:2]}, expected {size}")
            if name == "hands" and not result.landmarks and self.empty_hands == "skip":
                raise UserError("no hand detected (--empty-hands skip)")
            conditions[name] = encode_png(result.image)
            if result.landmarks is not None:
                landmarks[name] = result.landmarks
        return {
            "image": encode_png(picture),
            "conditions": conditions,
            "text": item.caption,
            "source": item.source,
            "landmarks": json.dumps(landmarks, separators=(",", ":")),
        }

    def __call__(self, items: list[Item]) -> ChunkResult:
        rows, rejects = [], []
        for item in items:
            try:
                rows.append(self.row(item))
            except UserError as err:
                rejects.append({"input": item.index, "source": item.source, "reason": _reason(item, err)})
            except Exception as err:  # one odd file must not cost the rest of a long run
                reason = f"unexpected {type(err).__name__}: {' '.join(str(err).split())}"
                rejects.append({"input": item.index, "source": item.source, "reason": reason})
        return ChunkResult(rows=rows, rejects=rejects)


def _reason(item: Item, err: Exception) -> str:
    # load_image names its input; for bytes that is "<123 bytes>", so say which row it was.
    text = str(err)
    return text.replace(f"<{len(item.data)} bytes>", item.source) if isinstance(item.data, bytes) else text


def open_source(
    *,
    images: str | None,
    dataset: str | None,
    captions: str | None,
    caption_column: str | None,
    image_column: str,
):
    if (images is None) == (dataset is None):
        raise UserError("give exactly one of --images DIR or --dataset PATH")
    if images is not None:
        return ImageFolder(
            Path(images), captions=Path(captions) if captions else None, caption_column=caption_column
        )
    if captions is not None:
        raise UserError("--captions goes with --images; a --dataset carries its captions in --caption-column")
    return TableDataset(Path(dataset), image_column=image_column, caption_column=caption_column)


def parse_condition_names(text: str) -> tuple[str, ...]:
    from controlsprint.conditions import extractor_names

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in extractor_names()]
    if unknown or not names:
        raise UserError(f"--conditions {text}: known extractors are {', '.join(extractor_names())}")
    if len(set(names)) != len(names):
        raise UserError(f"--conditions {text}: a condition is listed twice")
    return names


def make_prepare_job(
    out_dir: Path,
    source,
    *,
    conditions: tuple[str, ...],
    options: Mapping[str, Mapping[str, Any]],
    resolution: int | None,
    max_pixels: int | None,
    empty_hands: str,
    shard_size: int,
) -> Job:
    from controlsprint.conditions import get_extractor

    if resolution is not None and resolution < 8:
        raise UserError(f"--resolution {resolution}: must be at least 8")
    if empty_hands not in EMPTY_HANDS_POLICIES:
        raise UserError(f"--empty-hands {empty_hands}: choose {' or '.join(EMPTY_HANDS_POLICIES)}")
    for name in conditions:
        get_extractor(name, **options.get(name, {})).close()  # bad options fail now, not in every worker
    recipe = {
        "source": source.fingerprint,
        "conditions": list(conditions),
        "options": {k: dict(v) for k, v in options.items() if v},
        "resolution": resolution,
        "max_pixels": max_pixels,
        "empty_hands": empty_hands,
        "shard_size": shard_size,
    }
    return Job(
        out_dir=Path(out_dir),
        created_by="controlsprint prepare",
        num_inputs=source.num_inputs,
        shard_size=shard_size,
        conditions=conditions,
        extra_columns=PREPARE_COLUMNS,
        recipe=recipe,
        load_chunk=source.load_chunk,
        worker=PrepareWorker(
            conditions, {k: dict(v) for k, v in options.items()}, resolution, max_pixels, empty_hands
        ),
        chunk_size=4,
        unit="img",
    )
