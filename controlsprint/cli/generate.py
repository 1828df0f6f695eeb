"""`controlsprint generate`: text (+ conditions, init image, mask) -> PNG images via the shared core."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from controlsprint.cli.args import parse_assignments
from controlsprint.errors import UserError

NAME = "generate"
HELP = "generate images from a prompt and conditions (txt2img, img2img, inpaint, multi-ControlNet)"
DESCRIPTION = """\
Generate images with the shared inference core. Each --control NAME=IMAGE runs the extractor NAME
(canny, segment, hands, pose, face, gray) on IMAGE and feeds the result to the ControlNet named NAME
(--raw-condition: IMAGE already is the condition). Without --model the embedded default model is used.
--init-image turns on img2img (noise it by --strength); adding --mask (white = repaint) inpaints.
Outputs are PNGs whose text metadata records every generation parameter; a second run with the same
arguments and --seed writes identical bytes.

examples:
  controlsprint generate --prompt "a red circle above a blue square" --control canny=photo.png --out out.png
  controlsprint generate --prompt "a hand" --control hands=hand.jpg --scale hands=0.8 --num-images 4 --out hands/
  controlsprint generate --prompt "a green room" --init-image room.png --mask mask.png \\
      --control segment=room.png --out room-green.png
  controlsprint generate --model ~/sd15 --controlnet canny=~/cn-canny --prompt "a house" \\
      --control canny=house.jpg --steps 30 --scheduler dpm --out house.png"""
USES_JAX = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prompt", action="append", required=True, metavar="P", help="prompt (repeat for a batch)"
    )
    parser.add_argument("--negative-prompt", default="", metavar="N", help="what to steer away from")
    parser.add_argument(
        "--control", action="append", metavar="NAME=IMAGE", help="condition a ControlNet on IMAGE"
    )
    parser.add_argument("--raw-condition", action="store_true", help="IMAGEs are conditions already")
    parser.add_argument(
        "--model", metavar="DIR", help="diffusers-layout model folder (default: embedded model)"
    )
    parser.add_argument("--controlnet", action="append", metavar="NAME=DIR", help="load an extra ControlNet")
    parser.add_argument("--scheduler", default="ddim", choices=("ddim", "dpm", "euler"))
    parser.add_argument("--steps", type=int, default=20, metavar="N")
    parser.add_argument(
        "--guidance",
        type=float,
        metavar="G",
        help="classifier-free guidance (default: the model's guidance_scale, else 7.5)",
    )
    parser.add_argument("--scale", action="append", metavar="NAME=S", help="ControlNet conditioning scale")
    parser.add_argument(
        "--start", action="append", metavar="NAME=F", help="fraction of steps where it starts"
    )
    parser.add_argument("--end", action="append", metavar="NAME=F", help="fraction of steps where it ends")
    parser.add_argument("--guess-mode", action="store_true", help="ControlNet without relying on the prompt")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--num-images", type=int, default=1, metavar="K", help="images per prompt")
    parser.add_argument("--init-image", metavar="IMG", help="img2img / inpaint source image")
    parser.add_argument(
        "--strength", type=float, default=0.8, metavar="F", help="img2img noise strength (0..1]"
    )
    parser.add_argument("--mask", metavar="MASK", help="inpaint mask: white = repaint (needs --init-image)")
    parser.add_argument("--width", type=int, metavar="W")
    parser.add_argument("--height", type=int, metavar="H")
    parser.add_argument("--out", required=True, metavar="PATH", help="a .png file, or a folder for several")
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no per-step bar (it shows only on a terminal; without it a new process starts faster)",
    )


def output_paths(out: str, count: int) -> list[Path]:
    path = Path(out)
    if path.suffix.lower() == ".png":
        if count == 1:
            return [path]
        return [path.with_name(f"{path.stem}_{i}.png") for i in range(count)]
    if path.suffix:
        raise UserError(f"--out {out}: use a .png file name or a folder")
    return [path / f"{i:04d}.png" for i in range(count)]


def _conditions(args: argparse.Namespace, resolution: int | None) -> list[tuple[str, str, object]]:
    """(name, source path, condition image) for each --control."""
    from controlsprint.conditions import extractor_names, get_extractor
    from controlsprint.imageio import load_image

    controls = parse_assignments(args.control, "--control")
    out = []
    for name, source in controls.items():
        image = load_image(source)
        if not args.raw_condition:
            if name not in extractor_names():
                raise UserError(
                    f"--control {name}={source}: unknown condition '{name}' "
                    f"(extractors: {', '.join(extractor_names())}; or pass --raw-condition)"
                )
            image = get_extractor(name)(image, resolution=resolution)
        out.append((name, source, image))
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from controlsprint import __version__
    from controlsprint.imageio import load_image, save_png
    from controlsprint.inference import Control, make_request
    from controlsprint.inference.loading import load_core

    scales = parse_assignments(args.scale, "--scale", float)
    starts = parse_assignments(args.start, "--start", float)
    ends = parse_assignments(args.end, "--end", float)
    core = load_core(args.model, parse_assignments(args.controlnet, "--controlnet"))
    guidance = core.default_guidance if args.guidance is None else args.guidance
    sizes = [s for s in (args.width, args.height) if s]
    conditions = _conditions(args, min(sizes) if sizes else core.native_size)
    named = {name for name, _, _ in conditions}
    for flag, values in (("--scale", scales), ("--start", starts), ("--end", ends)):
        stray = sorted(set(values) - named)
        if stray:
            raise UserError(f"{flag} {stray[0]}=...: no --control {stray[0]}=IMAGE given")
    controls = [
        Control(name, image, scales.get(name, 1.0), starts.get(name, 0.0), ends.get(name, 1.0))
        for name, _, image in conditions
    ]
    request = make_request(
        args.prompt,
        args.negative_prompt,
        controls=controls,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance=guidance,
        scheduler=args.scheduler,
        seed=args.seed,
        num_images=args.num_images,
        init_image=load_image(args.init_image) if args.init_image else None,
        strength=args.strength,
        mask=load_image(args.mask) if args.mask else None,
        guess_mode=args.guess_mode,
    )
    paths = output_paths(args.out, request.batch)
    if args.no_progress or not sys.stderr.isatty():
        # No per-step callback: the program then comes from the on-disk program cache, so a new
        # process skips tracing it (a callback ties the program to its process; see programs.py).
        images = core.generate(request)
    else:
        with tqdm(total=request.steps, desc="generating", unit="step", leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            images = core.generate(request, progress=progress)
    record = {
        "model": str(core.pipeline.folder),
        "negative_prompt": args.negative_prompt,
        "controls": [
            {"name": c.name, "image": source, "scale": c.scale, "start": c.start, "end": c.end}
            for c, (_, source, _) in zip(controls, conditions, strict=True)
        ],
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": guidance,
        "init_image": args.init_image,
        "strength": args.strength if args.init_image else None,
        "mask": args.mask,
        "guess_mode": args.guess_mode,
        "size": f"{images.shape[2]}x{images.shape[1]}",
        "software": f"controlsprint {__version__}",
    }
    for index, (path, image) in enumerate(zip(paths, images, strict=True)):
        prompt = args.prompt[index // args.num_images]
        meta = {"prompt": prompt, "seed": args.seed, "image_index": index % args.num_images, **record}
        save_png(path, image, {"parameters": json.dumps(meta), "prompt": prompt})
    print(f"wrote {len(paths)} image(s): {paths[0]}" + (f" ... {paths[-1]}" if len(paths) > 1 else ""))
    return 0
