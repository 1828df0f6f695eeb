"""Benchmark `controlsprint prepare`: images/s with 1 and 2 workers vs a plain single-process loop.

The plain loop is what one would write by hand: for each file, cv2.imread, resize (short side =
resolution), cv2.Canny or MediaPipe Hands (on the resized picture) + MediaPipe's own drawing, and
PNG-encode the picture and the condition (the same work `prepare` does per image, minus the dataset
bookkeeping). OpenCV and MediaPipe keep their default threading in the plain loop. `prepare` runs end to
end through the CLI's job (load_image, extractors, parquet shards, manifest, fsync), in a fresh output
directory each time. Both include their start-up (model build; for 2 workers, spawning the processes),
measured on the same inputs, alternately, several repeats; medians are reported. CPU time (all
processes and threads) is recorded too: on a shared machine the wall-clock ratio mostly measures the
other tenants, while CPU per image does not.

    python bench/prepare.py                  # 600 inputs made from the test photos, 3 repeats
    python bench/prepare.py --count 240 --repeats 5 --conditions canny

600 by default: a real run has thousands of images, and the two workers' start-up (process start,
imports, MediaPipe's graph: about a second of CPU in all) is 4-8 ms per image at 240 images, a third
of that at 600. Smaller counts measure start-up more than throughput.

The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import tempfile
from pathlib import Path

from common import alternate, emit, find_photos


def make_inputs(photos: Path, count: int, folder: Path) -> list[Path]:
    sources = sorted(p for p in photos.iterdir() if p.suffix.lower() in {".jpg", ".png"})
    folder.mkdir(parents=True)
    files = []
    for index in range(count):
        source = sources[index % len(sources)]
        target = folder / f"{index:05d}_{source.name}"
        shutil.copy(source, target)
        files.append(target)
    return files


def plain_loop(files: list[Path], condition: str, resolution: int) -> None:
    """The hand-written reference: cv2 / mediapipe called directly, one process."""
    import cv2
    import numpy as np

    if condition == "hands":
        import mediapipe as mp

        hands = mp.solutions.hands.Hands(static_image_mode=True, max_num_hands=2)
        styles, drawing = mp.solutions.drawing_styles, mp.solutions.drawing_utils
    for path in files:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        height, width = bgr.shape[:2]
        scale = resolution / min(height, width)
        size = (round(width * scale / 8) * 8, round(height * scale / 8) * 8)
        small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        if condition == "canny":
            result = cv2.Canny(small, 100, 200)
        else:
            found = hands.process(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))  # as prepare: on the stored size
            result = np.zeros_like(small)
            for marks in found.multi_hand_landmarks or []:
                drawing.draw_landmarks(
                    result,
                    marks,
                    mp.solutions.hands.HAND_CONNECTIONS,
                    styles.get_default_hand_landmarks_style(),
                    styles.get_default_hand_connections_style(),
                )
        cv2.imencode(".png", small)
        cv2.imencode(".png", result)
    if condition == "hands":
        hands.close()


def ours(folder: Path, condition: str, workers: int, resolution: int, out: Path) -> None:
    from controlsprint.data.pipeline import run_job
    from controlsprint.data.prepare import make_prepare_job, open_source

    source = open_source(
        images=str(folder), dataset=None, captions=None, caption_column=None, image_column="image"
    )
    job = make_prepare_job(
        out,
        source,
        conditions=(condition,),
        options={},
        resolution=resolution,
        max_pixels=None,
        empty_hands="blank",
        shard_size=64,
    )
    summary = run_job(job, workers=workers, progress=False)
    assert summary["rows"] == len(source.files), summary


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers), all threads."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def with_cpu(run, spent: list[float]):
    """`run`, also appending the CPU seconds it used (all processes) to `spent`."""

    def measured() -> None:
        before = cpu_seconds()
        run()
        spent.append(cpu_seconds() - before)

    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=600, help="inputs (copies of the test photos)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--conditions", default="canny,hands")
    args = parser.parse_args()

    record: dict = {"benchmark": "prepare", "count": args.count, "resolution": args.resolution}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        files = make_inputs(find_photos(), args.count, folder)
        runs = itertools.count()

        def ours_fresh(condition: str, workers: int) -> None:
            out = Path(tmp) / f"out{next(runs)}"
            ours(folder, condition, workers, args.resolution, out)
            shutil.rmtree(out)

        for condition in args.conditions.split(","):
            print(f"{condition}: {args.count} images, short side {args.resolution}", flush=True)
            cpu: dict[str, list[float]] = {"plain": [], "workers_1": [], "workers_2": []}
            seconds = alternate(
                {
                    "plain": with_cpu(
                        lambda c=condition: plain_loop(files, c, args.resolution), cpu["plain"]
                    ),
                    "workers_1": with_cpu(lambda c=condition: ours_fresh(c, 1), cpu["workers_1"]),
                    "workers_2": with_cpu(lambda c=condition: ours_fresh(c, 2), cpu["workers_2"]),
                },
                args.repeats,
            )
            rates = {name: args.count / s for name, s in seconds.items()}
            cpu_ms = {name: 1000 * statistics.median(v) / args.count for name, v in cpu.items()}
            # What 2 idle cores would give: the plain loop keeps one core busy (measured: CPU ~ wall), two
            # workers at best keep two busy, so the bound is 2 x plain CPU/image over ours (start-up included).
            bound = 2 * cpu_ms["plain"] / cpu_ms["workers_2"]
            record[condition] = {
                **{f"{name}_images_per_s": round(rate, 2) for name, rate in rates.items()},
                "workers_1_vs_plain": round(rates["workers_1"] / rates["plain"], 3),
                "workers_2_vs_plain": round(rates["workers_2"] / rates["plain"], 3),
                **{f"{name}_cpu_ms_per_image": round(ms, 1) for name, ms in cpu_ms.items()},
                "workers_2_vs_plain_on_idle_cores_bound": round(bound, 3),
            }
            print(
                f"{condition}: plain {rates['plain']:.1f}/s, 1 worker {rates['workers_1']:.1f}/s "
                f"({rates['workers_1'] / rates['plain']:.2f}x), 2 workers {rates['workers_2']:.1f}/s "
                f"({rates['workers_2'] / rates['plain']:.2f}x)  [medians of {args.repeats}]; CPU ms/image: "
                + ", ".join(f"{name} {ms:.1f}" for name, ms in cpu_ms.items())
                + f"; 2 workers on 2 idle cores: at most {bound:.2f}x",
                flush=True,
            )
    emit(record)


if __name__ == "__main__":
    main()
