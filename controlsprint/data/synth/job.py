"""`controlsprint synth` as a pipeline job: rows from seeds, with their ground-truth conditions.

Conditions of a synthetic scene are exact, not estimated:
- segment: the class-colour map drawn with the shapes themselves;
- canny, gray: the `canny` and `gray` extractors run on the rendered picture (the same code `prepare`
  runs on photos, so synthetic and real datasets agree on what an edge map is);
- hands: the true 21-point skeletons drawn by the `hands` extractor's own drawing function (black when
  the scene has no hands), so a synthetic skeleton looks exactly like one found in a photo.

Clip kinds (`motion`) also store the clip (`frames`, one PNG filmstrip) and the motion record (`motion`
JSON); their conditions are those of the first frame, the hint a video model starts from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controlsprint.data import format as fmt
from controlsprint.data.pipeline import ChunkResult, Job
from controlsprint.data.synth import check_clip_kinds, render_scene, row_seed
from controlsprint.data.synth.scene import Scene
from controlsprint.errors import UserError

SYNTH_COLUMNS = {"kind": "string", "seed": "int64", "objects": "string"}
CLIP_COLUMNS = {fmt.FRAMES_COLUMN: "image", fmt.MOTION_COLUMN: "string"}


def hand_points(scene: Scene) -> list[np.ndarray]:
    """The scene's hands as (21, 2) pixel coordinates each, what the hands extractor draws."""
    return [np.array([[mark["px"], mark["py"]] for mark in hand["landmarks"]]) for hand in scene.hands]


def ground_truth_conditions(scene: Scene, names: tuple[str, ...], extractors: dict) -> dict[str, np.ndarray]:
    """Each named condition of `scene` (HxWx3 uint8); `extractors` caches canny/gray between calls."""
    from controlsprint.conditions.hands import draw_hands

    result = {}
    for name in names:
        if name == "segment":
            result[name] = scene.segmentation
        elif name == "hands":
            result[name] = draw_hands(hand_points(scene), scene.image.shape[:2])
        else:
            if name not in extractors:
                from controlsprint.conditions import get_extractor

                extractors[name] = get_extractor(name)
            result[name] = extractors[name](scene.image)
    return result


@dataclass
class SynthWorker:
    """Renders rows [start, end); sent once to each worker process, builds its extractors there."""

    kinds: tuple[str, ...]
    seed: int
    size: int
    conditions: tuple[str, ...]
    frames: int | None = None  # clip length for clip kinds; None for still kinds
    _extractors: dict = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractors": {}}

    def row(self, index: int) -> dict:
        from controlsprint.data.codec import encode_clip, encode_png

        kind = self.kinds[index % len(self.kinds)]
        seed = row_seed(self.seed, index)
        scene = render_scene(kind, seed, self.size, frames=self.frames)
        conditions = ground_truth_conditions(scene, self.conditions, self._extractors)
        row = {
            "image": encode_png(scene.image),
            "conditions": {name: encode_png(pixels) for name, pixels in conditions.items()},
            "text": scene.caption,
            "kind": kind,
            "seed": seed,
            "objects": json.dumps(scene.objects, separators=(",", ":")),
        }
        if self.frames is not None:
            row[fmt.FRAMES_COLUMN] = encode_clip(scene.frames)
            row[fmt.MOTION_COLUMN] = json.dumps(scene.motion, separators=(",", ":"))
        return row

    def __call__(self, payload: tuple[int, int]) -> ChunkResult:
        start, end = payload
        return ChunkResult(rows=[self.row(i) for i in range(start, end)])


def make_synth_job(
    out_dir: Path,
    *,
    num: int,
    size: int,
    seed: int,
    kinds: tuple[str, ...],
    conditions: tuple[str, ...],
    shard_size: int,
    frames: int | None = None,
) -> Job:
    if num < 1:
        raise UserError(f"--num {num}: must be at least 1")
    if size < 32 or size % 8:
        raise UserError(f"--size {size}: must be a multiple of 8 and at least 32")
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed {seed}: must be a non-negative integer below 2**63")
    frames = check_clip_kinds(kinds, frames)
    recipe = {
        "source": "synth",
        "kinds": list(kinds),
        "seed": seed,
        "size": size,
        "num": num,
        "conditions": list(conditions),
        "shard_size": shard_size,
    }
    if frames is not None:  # only clip datasets carry it, so still datasets keep their old recipe
        recipe["frames"] = frames
    return Job(
        out_dir=Path(out_dir),
        created_by="controlsprint synth",
        num_inputs=num,
        shard_size=shard_size,
        conditions=conditions,
        extra_columns=SYNTH_COLUMNS if frames is None else {**SYNTH_COLUMNS, **CLIP_COLUMNS},
        recipe=recipe,
        load_chunk=lambda start, end: (start, end),
        worker=SynthWorker(kinds, seed, size, conditions, frames),
        chunk_size=64 if frames is None else max(1, 64 // frames),
        unit="img" if frames is None else "clip",
    )
