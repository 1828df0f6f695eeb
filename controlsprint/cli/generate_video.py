"""`controlsprint generate-video`: text + hint image -> a short clip (GIF, WebM or MP4) via the shared core."""

from __future__ import annotations

import argparse
import json

NAME = "generate-video"
HELP = "generate a short clip from a prompt and a hint image (Make-a-Video style)"
DESCRIPTION = """\
Generate a clip with the video UNet: the model's image UNet with temporal layers (a temporal/ part of
the model folder; the embedded default model has one). The hint image is the clip's first frame: its
latent conditions every frame, and frame 0 is held on it while sampling (--free-first-frame lets the
model redraw it). Every frame starts from the hint noised by --hint-strength (0.6; 1 = from pure
noise), so the clip keeps the hint's layout. Without --hint the clip comes from the prompt alone. The output format follows the
--out suffix: .gif, .webm (VP9, plays in browsers) or .mp4 (MPEG-4 Part 2, for desktop players).
The same arguments and --seed give the same frames.

examples:
  controlsprint generate-video --prompt "a red circle moving to the right on a yellow background" \\
      --hint first.png --frames 8 --fps 8 --out clip.gif
  controlsprint generate-video --prompt "a blue square growing" --hint square.png --out clip.webm"""
USES_JAX = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompt", required=True, metavar="P", help="what happens in the clip")
    parser.add_argument("--negative-prompt", default="", metavar="N", help="what to steer away from")
    parser.add_argument("--hint", metavar="IMAGE", help="the first frame (any image file)")
    parser.add_argument("--frames", type=int, default=8, metavar="F", help="clip length (default 8)")
    parser.add_argument("--fps", type=float, default=8.0, metavar="R", help="frames per second of the file")
    parser.add_argument(
        "--model", metavar="DIR", help="model folder with a temporal/ part (default: embedded model)"
    )
    parser.add_argument("--scheduler", default="ddim", choices=("ddim", "dpm", "euler"))
    parser.add_argument("--steps", type=int, default=20, metavar="N")
    parser.add_argument("--guidance", type=float, metavar="G", help="classifier-free guidance (default 5)")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--width", type=int, metavar="W")
    parser.add_argument("--height", type=int, metavar="H")
    parser.add_argument(
        "--free-first-frame", action="store_true", help="do not hold frame 0 on the hint image"
    )
    parser.add_argument(
        "--hint-strength",
        type=float,
        default=None,
        metavar="F",
        help="how far every frame's start is noised from the hint: 1 = pure noise (default 0.6)",
    )
    parser.add_argument("--out", required=True, metavar="PATH", help="clip file: .gif, .webm or .mp4")
    parser.add_argument("--frames-out", metavar="PNG", help="also write the frames side by side as one PNG")


def run(args: argparse.Namespace) -> int:
    from controlsprint import __version__
    from controlsprint.clipio import clip_suffix, save_clip
    from controlsprint.errors import UserError
    from controlsprint.imageio import load_image, save_png
    from controlsprint.inference import VIDEO_GUIDANCE, VIDEO_HINT_STRENGTH, make_request
    from controlsprint.inference.loading import load_core

    clip_suffix(args.out)  # a bad --out fails before the model loads
    if not 0 < args.fps <= 120:
        raise UserError(f"--fps {args.fps}: must be in (0, 120]")
    if args.frames < 1:
        raise UserError(f"--frames {args.frames}: must be at least 1")
    hint = load_image(args.hint) if args.hint else None
    core = load_core(args.model, {})
    request = make_request(
        args.prompt,
        args.negative_prompt,
        frames=args.frames,
        hint_image=hint,
        lock_first_frame=not args.free_first_frame,
        hint_strength=VIDEO_HINT_STRENGTH if args.hint_strength is None else args.hint_strength,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=VIDEO_GUIDANCE if args.guidance is None else args.guidance,
        scheduler=args.scheduler,
        seed=args.seed,
    )
    clip = core.generate(request)[0]
    save_clip(args.out, clip, args.fps)
    if args.frames_out:
        record = {
            "prompt": args.prompt,
            "hint": args.hint,
            "hint_strength": request.hint_strength,
            "frames": args.frames,
            "seed": args.seed,
            "steps": args.steps,
            "guidance": request.guidance,
            "scheduler": args.scheduler,
            "model": str(core.pipeline.folder),
            "software": f"controlsprint {__version__}",
        }
        strip = clip.transpose(1, 0, 2, 3).reshape(clip.shape[1], -1, 3)
        save_png(args.frames_out, strip, {"parameters": json.dumps(record), "prompt": args.prompt})
    height, width = clip.shape[1:3]
    print(f"wrote {args.out}: {len(clip)} frames of {width}x{height} at {args.fps:g} fps")
    return 0
