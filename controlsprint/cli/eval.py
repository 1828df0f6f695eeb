"""`controlsprint eval`: controllability of a ControlNet on held-out synthetic scenes."""

from __future__ import annotations

import argparse
import json
import math

NAME = "eval"
HELP = "measure controllability (canny F1, segment mIoU, gray PSNR, hands F1) or a video model's clips"
DESCRIPTION = """\
Render held-out synthetic scenes (shapes for canny/segment/gray, hands for hands) from --seed, take
their ground-truth condition, generate once with the ControlNet (conditioning scale --scale) and once
with it off (scale 0, same seed), and score both ControlNet++-style: canny F1 of the output's edges
against the condition (2 px tolerance), segment mIoU of the output clustered by colour, gray PSNR of
the output's grayscale, hands skeleton F1. Shape scenes also report the colour accuracy of the largest
shape. Prints one JSON line; writes DIR/grid.png (condition | with control | control off) and
DIR/metrics.json.

--control video evaluates the video model (temporal layers) instead: held-out synthetic motion clips
of --frames frames, generated from their first frame and caption, scored by first-frame PSNR against
the hint, temporal difference (mean frame-to-frame change, next to the ground truth's) and motion
direction accuracy, with the temporal layers on and off. DIR also gets a few clips as GIFs.

examples:
  controlsprint eval --control canny --out eval/canny
  controlsprint eval --control segment --num 64 --seed 7 --out eval/segment
  controlsprint eval --control canny --controlnet runs/canny/export/pipeline/controlnets/canny --out eval/mine
  controlsprint eval --control canny --scale 2.5 --seed 20000 --out eval/canny-2.5
  controlsprint eval --control video --num 16 --frames 8 --out eval/video"""
USES_JAX = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control", required=True, metavar="NAME", help="canny, segment, gray, hands or video"
    )
    parser.add_argument("--model", metavar="DIR", help="pipeline folder (default: the embedded model)")
    parser.add_argument("--controlnet", metavar="DIR", help="evaluate this ControlNet folder as NAME")
    parser.add_argument("--num", type=int, default=16, metavar="N", help="number of scenes (default 16)")
    parser.add_argument("--seed", type=int, default=10_000, metavar="S", help="scene seed (default 10000)")
    parser.add_argument("--steps", type=int, default=20, metavar="N", help="sampler steps (default 20)")
    parser.add_argument(
        "--guidance",
        type=float,
        metavar="G",
        help="CFG scale (default: the model's guidance_scale, else 7.5; video: 5)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        metavar="S",
        help="ControlNet conditioning scale of the with-control run (default 1; off is always 0)",
    )
    parser.add_argument("--frames", type=int, default=8, metavar="F", help="clip length (video; default 8)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for grid.png and metrics.json")


def run(args: argparse.Namespace) -> int:
    from controlsprint.errors import UserError
    from controlsprint.evaluation.evaluate import evaluate
    from controlsprint.inference.loading import load_core

    if args.num < 1:
        raise UserError(f"--num {args.num}: must be >= 1")
    if not (math.isfinite(args.scale) and args.scale > 0):
        raise UserError(f"--scale {args.scale}: must be a positive number")
    common = {
        "num": args.num,
        "seed": args.seed,
        "steps": args.steps,
        "guidance": args.guidance,
        "out": args.out,
    }
    if args.control == "video":
        from controlsprint.data.synth import check_frames
        from controlsprint.evaluation.video import evaluate_video

        for flag, given in (("--controlnet", args.controlnet), ("--scale", args.scale != 1.0)):
            if given:
                raise UserError(f"{flag}: not used by --control video")
        check_frames(args.frames)
        result = evaluate_video(load_core(args.model), frames=args.frames, **common)
    else:
        core = load_core(args.model, {args.control: args.controlnet} if args.controlnet else None)
        result = evaluate(core, args.control, scale=args.scale, **common)
    print(json.dumps(result))
    return 0
