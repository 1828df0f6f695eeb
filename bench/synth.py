"""Benchmark `controlsprint synth`: images per minute at 128 px with 1 and 2 workers.

Runs the synth job end to end (render, ground-truth conditions, PNG encoding, parquet shards, manifest)
into a fresh directory per run, alternating worker counts, several repeats; prints medians and one JSON
line. Start-up (spawning workers) is included.

    python bench/synth.py                       # 3000 rows of shapes+hands, 3 repeats
    python bench/synth.py --num 6000 --kinds shapes
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_once(out: Path, num: int, size: int, kinds: tuple[str, ...], workers: int) -> float:
    from controlsprint.data.pipeline import run_job
    from controlsprint.data.synth import default_conditions
    from controlsprint.data.synth.job import make_synth_job

    started = time.perf_counter()
    job = make_synth_job(
        out, num=num, size=size, seed=0, kinds=kinds, conditions=default_conditions(kinds), shard_size=1000
    )
    summary = run_job(job, workers=workers, progress=False)
    assert summary["rows"] == num
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--kinds", default="shapes,hands")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kinds = tuple(args.kinds.split(","))
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                seconds = run_once(Path(tmp) / f"r{repeat}w{workers}", args.num, args.size, kinds, workers)
                times[workers].append(seconds)
                print(
                    f"workers {workers} repeat {repeat}: {60 * args.num / seconds:8.0f} images/min",
                    flush=True,
                )
    per_minute = {w: 60 * args.num / statistics.median(t) for w, t in times.items()}
    print(
        f"synth {args.kinds} {args.size}px: 1 worker {per_minute[1]:.0f}/min, 2 workers {per_minute[2]:.0f}/min "
        f"({per_minute[2] / per_minute[1]:.2f}x)  [medians of {args.repeats}, {os.cpu_count()} cpus]"
    )
    result = {
        "num": args.num,
        "size": args.size,
        "kinds": list(kinds),
        "cpus": os.cpu_count(),
        "workers_1_images_per_min": round(per_minute[1]),
        "workers_2_images_per_min": round(per_minute[2]),
        "seconds": {str(k): [round(s, 2) for s in v] for k, v in times.items()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
