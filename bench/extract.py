"""Extractor throughput: controlsprint's wrappers vs calling OpenCV / MediaPipe directly, same run.

    python bench/extract.py [--repeats 15] [--resolution 512] [--photos DIR] [--only canny,hands]

For each extractor, one pass runs every test photo (already decoded, in memory) through ours and the
reference, interleaved image by image with the order flipped every repeat; the medians of the pass
times over the repeats are compared. What the
reference does, per extractor:
  canny, gray      resize to the condition size + cv2.Canny / cv2.cvtColor + back to 3 channels
                   (the same pixels as ours; checked before timing)
  hands/pose/face  the MediaPipe solution's .process(image) on the same image, graph built once
                   (ours adds landmark records and the skeleton drawing on top)
  segment-offline  resize + cv2.ximgproc graph segmentation (ours adds area ranking and colouring)
overhead = ours_time / reference_time - 1; the goal is at most 10 %. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controlsprint.conditions import get_extractor  # noqa: E402
from controlsprint.conditions.base import condition_size, gray_to_rgb, resize_rgb  # noqa: E402
from controlsprint.conditions.landmarks import quiet_native_stderr  # noqa: E402
from controlsprint.imageio import load_image  # noqa: E402

PHOTOS = (
    "hand_thumb_up.jpg",
    "two_thumbs_up.jpg",
    "business_person.png",
    "couple_and_dog.jpg",
    "cat.jpg",
    "dinner_table.jpg",
)
EXTRACTORS = ("canny", "hands", "pose", "face", "gray", "segment-offline")


def find_photos(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if env := os.environ.get("CONTROLSPRINT_TESTDATA"):
        return Path(env)
    for parent in REPO.parents:
        if (candidate := parent / "shared" / "testdata" / "images").is_dir():
            return candidate
    sys.exit("bench/extract.py: test photos not found; pass --photos DIR or set CONTROLSPRINT_TESTDATA")


def reference_for(name: str, resolution: int) -> Callable[[np.ndarray], object]:
    """The direct OpenCV / MediaPipe call that does the extractor's core work."""
    import cv2

    def size_of(image: np.ndarray) -> tuple[int, int]:
        return condition_size(image.shape[0], image.shape[1], resolution)

    if name == "canny":
        return lambda image: gray_to_rgb(cv2.Canny(resize_rgb(image, size_of(image)), 100, 200))
    if name == "gray":
        return lambda image: gray_to_rgb(cv2.cvtColor(resize_rgb(image, size_of(image)), cv2.COLOR_RGB2GRAY))
    if name == "segment-offline":

        def segment(image: np.ndarray) -> np.ndarray:
            pixels = resize_rgb(image, size_of(image))
            min_size = int(0.002 * pixels.shape[0] * pixels.shape[1])
            graph = cv2.ximgproc.segmentation.createGraphSegmentation(sigma=0.8, k=400.0, min_size=min_size)
            return graph.processImage(pixels)

        return segment
    import mediapipe as mp

    with quiet_native_stderr():
        if name == "hands":
            graph = mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=2, min_detection_confidence=0.5
            )
        elif name == "pose":
            graph = mp.solutions.pose.Pose(
                static_image_mode=True, model_complexity=1, min_detection_confidence=0.5
            )
        else:
            graph = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=4, refine_landmarks=True, min_detection_confidence=0.5
            )
    return graph.process


def ours_for(name: str, resolution: int) -> Callable[[np.ndarray], object]:
    extractor = get_extractor("segment" if name == "segment-offline" else name)
    if name == "segment-offline":
        assert extractor.backend == "classical", "unset CONTROLSPRINT_SAM_MODEL to bench the offline backend"
    return lambda image: extractor(image, resolution=resolution)


def timed(function: Callable[[np.ndarray], object], image: np.ndarray) -> float:
    start = time.perf_counter()
    function(image)
    return time.perf_counter() - start


def bench_one(name: str, images: list[np.ndarray], resolution: int, repeats: int) -> dict:
    ours, reference = ours_for(name, resolution), reference_for(name, resolution)
    if name in ("canny", "gray"):  # same pixels, so the ratio is the wrapper alone
        for image in images:
            np.testing.assert_array_equal(ours(image), reference(image))
    with quiet_native_stderr():  # warm-up; MediaPipe graphs log once when they first detect something
        for image in images:
            ours(image)
            reference(image)
    # Interleaved image by image, the order flipped every repeat, so load changes on a shared machine
    # hit both sides alike; a pass is the sum over all photos.
    ours_passes, reference_passes = [], []
    for repeat in range(repeats):
        ours_total = reference_total = 0.0
        for image in images:
            if repeat % 2:
                reference_total += timed(reference, image)
                ours_total += timed(ours, image)
            else:
                ours_total += timed(ours, image)
                reference_total += timed(reference, image)
        ours_passes.append(ours_total)
        reference_passes.append(reference_total)
    ours_median, reference_median = statistics.median(ours_passes), statistics.median(reference_passes)
    return {
        "ours_images_per_s": round(len(images) / ours_median, 2),
        "reference_images_per_s": round(len(images) / reference_median, 2),
        "overhead": round(ours_median / reference_median - 1.0, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--photos", default=None)
    parser.add_argument("--only", default=",".join(EXTRACTORS), help="comma list of " + ", ".join(EXTRACTORS))
    args = parser.parse_args()
    os.environ.pop("CONTROLSPRINT_SAM_MODEL", None)
    folder = find_photos(args.photos)
    images = [load_image(folder / name) for name in PHOTOS]
    names = [n for n in args.only.split(",") if n]
    print(f"{len(images)} photos, resolution {args.resolution}, {args.repeats} repeats, medians; images/s")
    print(f"{'extractor':<16} {'ours':>9} {'direct':>9} {'overhead':>9}")
    results = {}
    for name in names:
        results[name] = bench_one(name, images, args.resolution, args.repeats)
        r = results[name]
        print(
            f"{name:<16} {r['ours_images_per_s']:>9.2f} {r['reference_images_per_s']:>9.2f} {r['overhead']:>+9.1%}",
            flush=True,
        )
    summary = {
        "bench": "extract",
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.python_implementation()} {platform.python_version()}",
        "resolution": args.resolution,
        "images": len(images),
        "repeats": args.repeats,
        "results": results,
        "max_overhead": max(r["overhead"] for r in results.values()),
        "goal_max_overhead": 0.10,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
