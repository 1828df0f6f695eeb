"""`controlsprint demo`: serve one Gradio app, or the suite of all of them, until Ctrl-C."""

from __future__ import annotations

import argparse

from controlsprint.cli.args import parse_assignments
from controlsprint.demos import MAX_FILE_SIZE, MAX_IMAGE_SIDE, SUITE, app_names

NAME = "demo"
HELP = "serve the Gradio demos (canny, sam, hands, interior, colorize, video, or all as tabs)"
DESCRIPTION = f"""\
Serve a Gradio app over the shared inference core: canny (edges from a photo or a sketch), sam
(segmentation map, editable), hands (MediaPipe skeletons, webcam too), interior (repaint a painted
region of a room), colorize (gray ControlNet), video (a short clip from a prompt and a first-frame
hint; needs a model with temporal layers), or all of them as tabs of one page (the default) over one
model. The model loads once, at start; the URL is printed; Ctrl-C stops the server. Without
--model the embedded default model is used. The segmentation apps (sam, interior) use SAM from
--sam-model DIR (or $CONTROLSPRINT_SAM_MODEL), else the offline segmenter. Uploads above
{MAX_FILE_SIZE.upper()} or {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} pixels are refused with a message.

examples:
  controlsprint demo                                  # every app, http://127.0.0.1:7860
  controlsprint demo canny --port 8080
  controlsprint demo all --model ~/sd15 --controlnet canny=~/cn-canny --host 0.0.0.0
  controlsprint demo hands --port 0                   # any free port (the URL line says which)
  controlsprint demo video --model ~/tiny-video       # a model folder with a temporal/ part"""
USES_JAX = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "app", nargs="?", default=SUITE, choices=app_names(), help=f"which app (default: {SUITE})"
    )
    parser.add_argument(
        "--model", metavar="DIR", help="diffusers-layout model folder (default: embedded model)"
    )
    parser.add_argument("--controlnet", action="append", metavar="NAME=DIR", help="load an extra ControlNet")
    parser.add_argument(
        "--sam-model", metavar="DIR", help="local transformers SAM folder for the segmentation apps"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, metavar="N", help="port (default: first free from 7860; 0: any free port)"
    )
    parser.add_argument(
        "--share", action="store_true", help="also open a public gradio.live link (needs internet)"
    )


def run(args: argparse.Namespace) -> int:
    import os

    from controlsprint.conditions.options import SAM_MODEL_ENV
    from controlsprint.demos.launch import serve
    from controlsprint.errors import UserError

    if args.port is not None and not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: must be between 0 and 65535")
    if args.sam_model:
        from controlsprint.conditions.sam import check_sam_folder

        # The segment extractor reads the variable when the apps build it (on their first request).
        os.environ[SAM_MODEL_ENV] = str(check_sam_folder(args.sam_model))
    controlnets = parse_assignments(args.controlnet, "--controlnet")
    return serve(
        args.app, model=args.model, controlnets=controlnets, host=args.host, port=args.port, share=args.share
    )
