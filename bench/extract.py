"""Extractor throughput: controlsprint's wrappers vs calling OpenCV / MediaPipe directly, same run.

    python bench/extract.py [--repeats 15] [--resolution 512] [--photos DIR] [--only canny,hands]

For each extractor, every test photo (already decoded, in memory) goes through ours and through the
reference, interleaved image by image with the order flipped every repeat. A pass time is the sum over
the photos of each photo's median time; the two pass times are compared. The reference, per extractor:
  canny, gray      resize to the condition size + cv2.Canny / cv2.cvtColor + back to 3 channels
                   (the same pixels as ours; checked before timing)
  hands/pose/face  .process(image) of the MediaPipe solution object our extractor holds (the same
                   graph; ours adds the skeleton drawing on top). The "+landmarks" rows also build
                   the JSON-ready landmark records (ext.extract(...).landmarks), which `ext(image)`
                   skips: records are made on first access.
  segment-offline  resize + cv2.ximgproc graph segmentation (ours adds area ranking and colouring)
overhead = ours_time / reference_time - 1 on wall-clock time; cpu_overhead is the same on the CPU time
the process used (all its threads), which other processes' load disturbs less. The goal is at most
10 %. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from common import emit, find_photos

from controlsprint.conditions import Extractor, get_extractor
from controlsprint.conditions.base import condition_size, gray_to_rgb, resize_rgb
from controlsprint.conditions.landmarks import quiet_native_stderr
from controlsprint.imageio import load_image

PHOTOS = (
    "hand_thumb_up.jpg",
    "two_thumbs_up.jpg",
    "business_person.png",
    "couple_and_dog.jpg",
    "cat.jpg",
    "dinner_table.jpg",
)
EXTRACTORS = (
    "canny",
    "hands",
    "hands+landmarks",
    "pose",
    "pose+landmarks",
    "face",
    "face+landmarks",
    "gray",
    "segment-offline",
)


def ours_for(name: str, resolution: int) -> tuple[Extractor, Callable[[np.ndarray], object]]:
    base = name.removesuffix("+landmarks")
    extractor = get_extractor("segment" if base == "segment-offline" else base)
    if base == "segment-offline":
        assert extractor.backend == "classical", "unset CONTROLSPRINT_SAM_MODEL to bench the offline backend"
    if name.endswith("+landmarks"):  # the condition image and the JSON-ready landmark records
        return extractor, lambda image: extractor.extract(image, resolution=resolution).landmarks
    return extractor, lambda image: extractor(image, resolution=resolution)


def reference_for(name: str, resolution: int, extractor: Extractor) -> Callable[[np.ndarray], object]:
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
    # The very graph object our extractor uses: MediaPipe graph instances built alike differ by up to
    # ~15 % in speed from one another on this machine, which would swamp the wrapper's own cost.
    return extractor.graph().process


def timed(function: Callable[[np.ndarray], object], image: np.ndarray) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function(image)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_one(name: str, images: list[np.ndarray], resolution: int, repeats: int) -> dict:
    extractor, ours = ours_for(name, resolution)
    reference = reference_for(name, resolution, extractor)
    if name in ("canny", "gray"):  # same pixels, so the ratio is the wrapper alone
        for image in images:
            np.testing.assert_array_equal(ours(image), reference(image))
    with quiet_native_stderr():  # warm-up; MediaPipe graphs log once when they first detect something
        for image in images:
            ours(image)
            reference(image)
    ours_times: list[list[tuple[float, float]]] = [[] for _ in images]
    reference_times: list[list[tuple[float, float]]] = [[] for _ in images]
    for repeat in range(repeats):
        for index, image in enumerate(images):
            pair = [(ours, ours_times), (reference, reference_times)]
            for function, times in reversed(pair) if repeat % 2 else pair:
                times[index].append(timed(function, image))

    def pass_time(times: list[list[tuple[float, float]]], clock: int) -> float:
        return sum(statistics.median(sample[clock] for sample in per_image) for per_image in times)

    ours_wall, reference_wall = pass_time(ours_times, 0), pass_time(reference_times, 0)
    ours_cpu, reference_cpu = pass_time(ours_times, 1), pass_time(reference_times, 1)
    return {
        "ours_images_per_s": round(len(images) / ours_wall, 2),
        "reference_images_per_s": round(len(images) / reference_wall, 2),
        "overhead": round(ours_wall / reference_wall - 1.0, 4),
        "cpu_overhead": round(ours_cpu / reference_cpu - 1.0, 4),
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
    print(f"{'extractor':<16} {'ours':>9} {'direct':>9} {'overhead':>9} {'cpu-time':>9}")
    results = {}
    for name in names:
        results[name] = r = bench_one(name, images, args.resolution, args.repeats)
        print(
            f"{name:<16} {r['ours_images_per_s']:>9.2f} {r['reference_images_per_s']:>9.2f} "
            f"{r['overhead']:>+9.1%} {r['cpu_overhead']:>+9.1%}",
            flush=True,
        )
    summary = {
        "bench": "extract",
        "resolution": args.resolution,
        "images": len(images),
        "repeats": args.repeats,
        "results": results,
        "max_overhead": max(r["overhead"] for r in results.values()),
        "max_cpu_overhead": max(r["cpu_overhead"] for r in results.values()),
        "goal_max_overhead": 0.10,
    }
    emit(summary)


if __name__ == "__main__":
    main()
