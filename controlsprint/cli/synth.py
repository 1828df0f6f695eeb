"""`controlsprint synth`: write an offline synthetic conditioning dataset."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "write a synthetic (image, condition, caption) dataset: shapes, hands, motion clips; exact conditions"
DESCRIPTION = """\
Render a synthetic ControlNet dataset offline, in the spirit of fill50k but richer: scenes of coloured
shapes on solid or gradient backgrounds ("a red circle above a blue square on a yellow background"), and
stylised hands drawn from 21-point skeletons. Every row carries exact conditions: the true segmentation
map, canny edges and grayscale of the picture, and the true hand skeleton drawn as the hands extractor
draws one. `--kinds motion` makes short clips instead (--frames, default 8): one shape moving left,
right, up or down, growing, shrinking or changing colour ("a red circle moving to the right on a yellow
background"), stored with the motion record; the first frame is the row's picture. The same --seed gives
byte-identical files. Output: parquet shards + manifest.json (see docs/datasets.md), readable with
datasets.load_dataset("parquet", data_dir=OUT).

examples:
  controlsprint synth --out data/shapes --num 50000
  controlsprint synth --out data/mixed --num 20000 --size 256 --kinds shapes,hands --workers 2
  controlsprint synth --out data/hands --num 5000 --kinds hands --conditions hands,canny
  controlsprint synth --out data/motion --num 2000 --size 64 --kinds motion --frames 8
  controlsprint synth --out data/shapes --num 50000 --resume     # continue after Ctrl-C or a crash"""
USES_JAX = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")
    parser.add_argument("--num", type=int, required=True, metavar="N", help="number of rows")
    parser.add_argument(
        "--size", type=int, default=128, metavar="PX", help="square picture size, multiple of 8 (default 128)"
    )
    parser.add_argument("--seed", type=int, default=0, help="dataset seed; same seed, same bytes (default 0)")
    parser.add_argument(
        "--kinds",
        default="shapes",
        metavar="K1,K2",
        help="scene kinds, rows alternate between them (default shapes; known: shapes, hands, motion; "
        "motion makes clips and does not mix with the others)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        metavar="N",
        help="frames per clip for --kinds motion, 2 to 64 (default 8)",
    )
    parser.add_argument(
        "--conditions",
        default=None,
        metavar="C1,C2",
        help="conditions to store, first is the default `conditioning_image` (from segment, canny, gray, "
        "hands; default: the kinds' own, e.g. segment,canny,gray for shapes)",
    )
    parser.add_argument(
        "--shard-size", type=int, default=1000, metavar="K", help="rows per parquet shard (default 1000)"
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run into the same --out"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from controlsprint.data.pipeline import run_job
    from controlsprint.data.synth import parse_conditions, parse_kinds
    from controlsprint.data.synth.job import make_synth_job

    kinds = parse_kinds(args.kinds)
    conditions = parse_conditions(args.conditions, kinds)
    job = make_synth_job(
        args.out,
        num=args.num,
        size=args.size,
        seed=args.seed,
        kinds=kinds,
        conditions=conditions,
        shard_size=args.shard_size,
        frames=args.frames,
    )
    summary = run_job(job, workers=args.workers, resume=args.resume, progress=not args.no_progress)
    print(
        f"wrote {summary['rows']} rows ({', '.join(conditions)}) in {summary['shards']} shards to {args.out}"
        f" at {summary['inputs_per_second']:.0f} {'clips' if job.unit == 'clip' else 'images'}/s"
        + (
            f" ({summary['resumed_shards']} shards kept from the interrupted run)"
            if summary["resumed_shards"]
            else ""
        )
    )
    return 0
