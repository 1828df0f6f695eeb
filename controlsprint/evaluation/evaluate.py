"""Controllability evaluation on held-out synthetic scenes (`controlsprint eval`).

For each scene (rendered fresh from an eval seed the training data never used), the condition is
the scene's ground truth; the model generates once with the ControlNet and once with it switched off
(scale 0, same seed), and the condition's metric (see metrics.py) scores both. For shape scenes the
colour accuracy of the largest shape is checked too: is the mean colour the output has inside that
shape's true region closest to the colour the caption names?

The metric is also run on each scene's true picture (`ground_truth`): what a model that drew the scene
exactly would score, the ceiling a result is read against. For hands it is far below 1, because
MediaPipe finds few of the synthetic hands even in the true renders; for gray it is unbounded (an
exact match has infinite PSNR) and reported as null.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from controlsprint.evaluation.metrics import METRICS, UNITS, metric_for

KIND_FOR_CONTROL = {"canny": "shapes", "segment": "shapes", "gray": "shapes", "hands": "hands"}
EVAL_SEED = 10_000  # training data uses small seeds (0 by default); eval scenes come from elsewhere


def largest_shape_colour_correct(scene, generated: np.ndarray) -> bool | None:
    """Whether the output's colour inside the largest shape's region is the caption's colour."""
    from controlsprint.data.synth.palette import nearest_named_colours
    from controlsprint.evaluation.metrics import region_labels

    shapes = [o for o in scene.objects if o.get("class") not in (None, "background") and "colour" in o]
    if not shapes:
        return None
    largest = max(shapes, key=lambda o: o["radius"])
    labels = region_labels(scene.segmentation)
    cx, cy = (int(round(v)) for v in largest["centre_px"])
    region = labels == labels[min(cy, labels.shape[0] - 1), min(cx, labels.shape[1] - 1)]
    mean = generated[region].reshape(-1, 3).astype(np.float64).mean(axis=0)
    return nearest_named_colours(mean)[0] == largest["colour"]


def evaluate(
    core,
    control: str,
    *,
    num: int = 16,
    seed: int = EVAL_SEED,
    steps: int = 20,
    guidance: float | None = None,
    scale: float = 1.0,
    out: Path | None = None,
    grid_rows: int = 8,
    without_control: bool = True,
) -> dict:
    """`control`'s metric on `num` held-out scenes, with its ControlNet at `scale` and (unless
    `without_control` is False, for sweeps that measure it once) at 0, the same seeds otherwise.
    `guidance` None: the model's own CFG scale (`core.default_guidance`), as generate and the demos use."""
    from controlsprint.data.synth import render_scene, row_seed
    from controlsprint.data.synth.job import ground_truth_conditions
    from controlsprint.errors import UserError
    from controlsprint.inference import Control, make_request
    from controlsprint.training.validate import grid

    if control not in METRICS:
        raise UserError(f"--control {control}: eval knows {', '.join(METRICS)}")
    if control not in core.controlnet_names:
        raise UserError(
            f"--control {control}: the model has no ControlNet named '{control}' ({', '.join(core.controlnet_names) or 'none'})"
        )
    size = core.native_size
    guidance = core.default_guidance if guidance is None else guidance
    metric = metric_for(control)
    extractors: dict = {}
    on_scores, off_scores, truth_scores, colour_on, colour_off, rows = [], [], [], [], [], []
    for index in range(num):
        scene = render_scene(KIND_FOR_CONTROL[control], row_seed(seed, index), size)
        condition = ground_truth_conditions(scene, (control,), extractors)[control]
        common = {"steps": steps, "guidance": guidance, "seed": index}
        on = core.generate(
            make_request(scene.caption, controls=[Control(control, condition, scale)], **common)
        )[0]
        on_scores.append(metric(condition, on))
        truth_scores.append(metric(condition, scene.image))
        pictures = [(colour_on, on)]
        if without_control:  # the same scene, seed and sampler with the ControlNet at scale 0
            off = core.generate(
                make_request(scene.caption, controls=[Control(control, condition, 0.0)], **common)
            )[0]
            off_scores.append(metric(condition, off))
            pictures.append((colour_off, off))
        for store, image in pictures:
            correct = largest_shape_colour_correct(scene, image)
            if correct is not None:
                store.append(correct)
        if len(rows) < grid_rows:
            rows.append([condition, on, off] if without_control else [condition, on])
    result = {
        "control": control,
        "metric": UNITS[control],
        "with_control": float(np.mean(on_scores)),
        "without_control": float(np.mean(off_scores)) if without_control else None,
        "ground_truth": float(np.mean(truth_scores)) if np.isfinite(np.mean(truth_scores)) else None,
        "num": num,
        "seed": seed,
        "steps": steps,
        "guidance": guidance,
        "scale": scale,
        "model": str(core.pipeline.folder),
    }
    if colour_on:
        result["colour_accuracy_with_control"] = float(np.mean(colour_on))
        if without_control:
            result["colour_accuracy_without_control"] = float(np.mean(colour_off))
    if out is not None:
        from controlsprint.imageio import save_png

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_png(out / "grid.png", grid(rows))
        (out / "metrics.json").write_text(
            json.dumps(
                {**result, "per_sample": {"with_control": on_scores, "without_control": off_scores}}, indent=2
            )
            + "\n"
        )
    return result
