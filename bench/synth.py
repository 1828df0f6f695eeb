"""Benchmark `controlsprint synth`: images per minute at 128 px with 1 and 2 workers.

Runs the synth job end to end (render, ground-truth conditions, PNG encoding, parquet shards, manifest)
into a fresh directory per run, alternating worker counts, several repeats; prints medians and one JSON
line. Start-up (spawning workers) is included.

    python bench/synth.py                       # 3000 rows of shapes+hands, 3 repeats
    python bench/synth.py --num 6000 --kinds shapes
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
from pathlib import Path

from common import alternate, emit


def run_once(out: Path, num: int, size: int, kinds: tuple[str, ...], workers: int) -> None:
    from controlsprint.data.pipeline import run_job
    from controlsprint.data.synth import default_conditions
    from controlsprint.data.synth.job import make_synth_job

    job = make_synth_job(
        out, num=num, size=size, seed=0, kinds=kinds, conditions=default_conditions(kinds), shard_size=1000
    )
    summary = run_job(job, workers=workers, progress=False)
    assert summary["rows"] == num


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
    with tempfile.TemporaryDirectory() as tmp:
        runs = itertools.count()

        def fresh(workers: int) -> None:
            out = Path(tmp) / f"run{next(runs)}"
            run_once(out, args.num, args.size, kinds, workers)
            shutil.rmtree(out)

        seconds = alternate({"workers_1": lambda: fresh(1), "workers_2": lambda: fresh(2)}, args.repeats)
    per_minute = {name: 60 * args.num / s for name, s in seconds.items()}
    print(
        f"synth {args.kinds} {args.size}px: 1 worker {per_minute['workers_1']:.0f}/min, "
        f"2 workers {per_minute['workers_2']:.0f}/min  [medians of {args.repeats}]"
    )
    emit(
        {
            "benchmark": "synth",
            "num": args.num,
            "size": args.size,
            "kinds": list(kinds),
            **{f"{name}_images_per_min": round(rate) for name, rate in per_minute.items()},
        }
    )


if __name__ == "__main__":
    main()
