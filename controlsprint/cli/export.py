"""`controlsprint export`: a ControlNet or pipeline as PyTorch-diffusers and/or Flax folders."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a ControlNet or pipeline to PyTorch-diffusers / Flax folders with a model card"
DESCRIPTION = """\
Write CKPT (a ControlNet folder, a pipeline folder with model_index.json, or a training run's export)
as a folder that diffusers loads (`--format pytorch`: diffusion_pytorch_model.safetensors + config.json),
in controlsprint's Flax layout (`--format flax`: flax_model.safetensors), or both; plus a README.md
model card with Hugging Face metadata (base_model, tags).

examples:
  controlsprint export runs/canny/export/controlnet --out hub/controlnet-canny --format both
  controlsprint export my-sd-folder --out my-sd-pytorch --format pytorch --base-model my-org/my-sd
  controlsprint export runs/unet/export/pipeline --add-controlnet canny=runs/canny/export/pipeline/controlnets/canny \
      --format flax --half --out my-model
  controlsprint export my-model --add-temporal runs/video/export/pipeline/temporal --format flax --out my-video-model
  controlsprint export my-model --vae runs/decoder/export/pipeline/vae --format flax --out my-sharper-model
  controlsprint export my-model --controlnet-gain canny=2.5 --format flax --out my-firmer-model
  controlsprint export my-model --guidance-scale 2.5 --format flax --out my-model-at-cfg-2.5"""
USES_JAX = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="ControlNet or pipeline folder to export")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="destination folder (must be new or empty)"
    )
    parser.add_argument(
        "--format", dest="fmt", default="pytorch", choices=("pytorch", "flax", "both"), help="weights layout"
    )
    parser.add_argument(
        "--base-model", metavar="REPO", help="base_model for the model card (default: from CKPT)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out folder")
    parser.add_argument(
        "--add-controlnet",
        action="append",
        metavar="NAME=DIR",
        help="merge a ControlNet folder into a pipeline",
    )
    parser.add_argument(
        "--add-temporal",
        metavar="DIR",
        help="add a video model's temporal layers (a temporal/ folder) to a pipeline",
    )
    parser.add_argument(
        "--vae",
        metavar="DIR",
        help="replace a pipeline's VAE (e.g. one whose decoder was fine-tuned); its latents must match",
    )
    parser.add_argument(
        "--controlnet-gain",
        action="append",
        metavar="NAME=G",
        help="scale ControlNet NAME's residuals by G in its weights (what generate --scale NAME=G does at run time)",
    )
    parser.add_argument(
        "--guidance-scale",
        type=float,
        metavar="G",
        help="the CFG scale generate, eval and the demos default to for this pipeline (else 7.5)",
    )
    parser.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")


def run(args: argparse.Namespace) -> int:
    from controlsprint.cli.args import parse_assignments
    from controlsprint.models.export import export

    out = export(
        args.checkpoint,
        args.out,
        fmt=args.fmt,
        base_model=args.base_model,
        overwrite=args.overwrite,
        add_controlnets=parse_assignments(args.add_controlnet, "--add-controlnet"),
        add_temporal=args.add_temporal,
        vae=args.vae,
        controlnet_gains=parse_assignments(args.controlnet_gain, "--controlnet-gain", float),
        guidance_scale=args.guidance_scale,
        storage_dtype="float16" if args.half else "float32",
    )
    print(f"exported {args.checkpoint} -> {out} ({args.fmt})")
    return 0
