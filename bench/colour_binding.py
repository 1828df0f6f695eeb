"""How well base models follow the caption's colours with no control at all (issue 9's colour goal).

`controlsprint eval` scores colour under a ControlNet, inside the largest shape's true region. This asks
the text-to-image UNet alone, on held-out shape scenes (eval's seed 10000), two questions a reader
of its pictures would: is the background the colour the caption names (solid backgrounds only: the
median of a 6 px border, nearest named colour), and is the main blob the colour of the shape that
covers the most pixels (the most common named colour among pixels far from that background)? Each
model named is measured in the same run as the reference (the embedded model unless --reference),
and the ratio printed.

    python bench/colour_binding.py runs/unet/export/pipeline
    python bench/colour_binding.py A B --num 64 --reference runs/other/export/pipeline
"""

from __future__ import annotations

import argparse

import numpy as np
from common import emit

BORDER = 6  # pixels: a shape never comes this close to the edge (synth keeps a 3 % margin + radius)
FAR_FROM_BACKGROUND = 60.0  # RGB distance: a pixel this far from the background colour is "drawn"
MIN_BLOB_PIXELS = 20


def scene_scores(scene, image: np.ndarray) -> tuple[bool | None, bool]:
    """(background colour right, or None for a gradient; main blob is the largest shape's colour)."""
    from controlsprint.data.synth.palette import nearest_named_colours

    pixels = image.astype(np.float64)
    background = scene.objects[0]
    background_ok = None
    if background["gradient"] is None:
        b = BORDER
        border = np.concatenate(
            [pixels[:b], pixels[-b:], pixels[:, :b].swapaxes(0, 1), pixels[:, -b:].swapaxes(0, 1)], axis=0
        ).reshape(-1, 3)
        background_ok = nearest_named_colours(np.median(border, axis=0))[0] == background["colours"][0]
    flat = pixels.reshape(-1, 3)
    drawn = flat[((flat - np.median(flat, axis=0)) ** 2).sum(-1) > FAR_FROM_BACKGROUND**2]
    largest = _largest_by_area(scene)
    if len(drawn) < MIN_BLOB_PIXELS:
        return background_ok, False
    names, counts = np.unique(nearest_named_colours(drawn), return_counts=True)
    return background_ok, names[counts.argmax()] == largest


def _largest_by_area(scene) -> str:
    """The colour of the shape covering the most pixels (a star of the largest radius may cover fewer)."""
    from controlsprint.evaluation.metrics import region_labels

    labels = region_labels(scene.segmentation)
    shapes = [o for o in scene.objects if "colour" in o]
    areas = [
        np.sum(labels == labels[int(round(o["centre_px"][1])), int(round(o["centre_px"][0]))]) for o in shapes
    ]
    return shapes[int(np.argmax(areas))]["colour"]


def measure(model: str, num: int, seed: int, steps: int, guidance: float) -> dict:
    from controlsprint.data.synth import render_scene, row_seed
    from controlsprint.inference import make_request
    from controlsprint.inference.loading import load_core

    core = load_core(model)
    backgrounds, blobs = [], []
    for index in range(num):
        scene = render_scene("shapes", row_seed(seed, index), core.native_size)
        image = core.generate(make_request(scene.caption, steps=steps, guidance=guidance, seed=index))[0]
        background_ok, blob_ok = scene_scores(scene, image)
        if background_ok is not None:
            backgrounds.append(background_ok)
        blobs.append(blob_ok)
    return {
        "background_colour": float(np.mean(backgrounds)),
        "solid_backgrounds": len(backgrounds),
        "main_blob_colour": float(np.mean(blobs)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", nargs="+", help="pipeline folders to measure")
    parser.add_argument("--reference", default=None, help="pipeline folder (default: the embedded model)")
    parser.add_argument("--num", type=int, default=32)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    args = parser.parse_args()
    from controlsprint.models.default import resolve_model_dir

    reference = str(resolve_model_dir(args.reference))
    results = {}
    for model in [reference, *args.models]:
        results[model] = measure(model, args.num, args.seed, args.steps, args.guidance)
        figures = results[model]
        print(
            f"{model}: background {figures['background_colour']:.2f} (of {figures['solid_backgrounds']} solid), "
            f"main blob {figures['main_blob_colour']:.2f}",
            flush=True,
        )
    base = results[reference]
    for model in args.models:
        for key in ("background_colour", "main_blob_colour"):
            ratio = results[model][key] / base[key] if base[key] else float("inf")
            print(f"{model}: {key} {results[model][key]:.2f} = {ratio:.2f}x the reference's {base[key]:.2f}")
    emit({"bench": "colour_binding", "reference": reference, "results": results, "num": args.num})


if __name__ == "__main__":
    main()
