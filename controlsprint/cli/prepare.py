"""`controlsprint prepare`: build a conditioning dataset from real images with the extractors."""

from __future__ import annotations

import argparse
import sys

NAME = "prepare"
HELP = "run extractors over an image folder or a parquet dataset into a resumable training dataset"
DESCRIPTION = """\
Run condition extractors over an image folder (captions from metadata.jsonl/metadata.csv as in
datasets' imagefolder, or --captions FILE) or an existing parquet / save_to_disk dataset, in parallel
worker processes, and write parquet shards + manifest.json that the trainer and
datasets.load_dataset("parquet", data_dir=OUT) read (columns image, conditioning_image[_NAME], text,
source, landmarks; see docs/datasets.md). Bad images (empty, truncated, not an image, too large) are
listed in OUT/rejects.jsonl with the reason; the run still succeeds for the rest. After Ctrl-C or a
crash, run the same command with --resume: finished shards are kept, nothing is duplicated or lost.
Extractor options are the same flags as `controlsprint extract`.

examples:
  controlsprint prepare --images photos/ --conditions canny --out data/photos-canny
  controlsprint prepare --images photos/ --conditions canny,hands,gray --out data/p --workers 2
  controlsprint prepare --dataset hub_export/ --caption-column caption --conditions segment --out data/seg
  controlsprint prepare --images photos/ --conditions hands --empty-hands skip --out data/hands --resume"""
USES_JAX = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from controlsprint.imagelimits import DEFAULT_MAX_PIXELS

    source = parser.add_argument_group("input (one of)")
    source.add_argument("--images", metavar="DIR", help="folder of images (searched recursively)")
    source.add_argument(
        "--dataset", metavar="PATH", help="a .parquet file, a folder of them, or a save_to_disk folder"
    )
    parser.add_argument(
        "--conditions", required=True, metavar="C1,C2", help="extractors to run, first is the default"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output dataset directory")
    parser.add_argument(
        "--captions", metavar="FILE", help="captions .jsonl/.csv with file_name (default: DIR/metadata.*)"
    )
    parser.add_argument("--caption-column", metavar="C", help="caption column (default: text, else caption)")
    parser.add_argument(
        "--image-column", metavar="C", default="image", help="--dataset image column (default image)"
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=512,
        metavar="N",
        help="short side of stored pictures and conditions, sides rounded to multiples of 8 (default 512)",
    )
    parser.add_argument(
        "--empty-hands",
        choices=("blank", "skip"),
        default="blank",
        help="images where the hands extractor finds no hand: keep with a black condition, or skip (default blank)",
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes (default 1)")
    parser.add_argument(
        "--shard-size", type=int, default=1000, metavar="K", help="inputs per parquet shard (default 1000)"
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run into the same --out"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"reject images with more pixels, read from the header (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from controlsprint.cli.extract import add_extractor_option_flags

    add_extractor_option_flags(parser)


def run(args: argparse.Namespace) -> int:
    from controlsprint.cli.extract import _options_per_extractor
    from controlsprint.data.format import REJECTS_NAME
    from controlsprint.data.pipeline import run_job
    from controlsprint.data.prepare import make_prepare_job, open_source, parse_condition_names
    from controlsprint.errors import UserError

    conditions = parse_condition_names(args.conditions)
    if args.max_pixels < 1:
        raise UserError(f"--max-pixels {args.max_pixels}: must be at least 1")
    options = _options_per_extractor(args, list(conditions))
    source = open_source(
        images=args.images,
        dataset=args.dataset,
        captions=args.captions,
        caption_column=args.caption_column,
        image_column=args.image_column,
    )
    job = make_prepare_job(
        args.out,
        source,
        conditions=conditions,
        options=options,
        resolution=args.resolution,
        max_pixels=args.max_pixels,
        empty_hands=args.empty_hands,
        shard_size=args.shard_size,
    )
    for note in source.notes:  # after every option is checked, so a mistake stays a one-line error
        print(f"controlsprint prepare: {note}", file=sys.stderr)
    summary = run_job(job, workers=args.workers, resume=args.resume, progress=not args.no_progress)
    if summary["rows"] == 0:
        raise UserError(
            f"no usable images: all {summary['rejected']} inputs were rejected, see {args.out}/{REJECTS_NAME}"
        )
    rejected = (
        f"; {summary['rejected']} rejected, listed in {args.out}/{REJECTS_NAME}"
        if summary["rejected"]
        else "; none rejected"
    )
    kept = (
        f" ({summary['resumed_shards']} shards kept from the interrupted run)"
        if summary["resumed_shards"]
        else ""
    )
    print(
        f"prepared {summary['rows']} rows ({', '.join(conditions)}) in {summary['shards']} shards to {args.out}"
        f" at {summary['inputs_per_second']:.1f} images/s{rejected}{kept}"
    )
    return 0
