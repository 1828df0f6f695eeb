"""`controlsprint train`: the training entry (also `python train/train.py`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "train"
HELP = "train a ControlNet, base UNet or VAE from a config (CPU to TPU pods)"
DESCRIPTION = """\
Train from CONFIG: a name from train/configs (tiny, default-vae, default-unet, default-canny, ...,
sd15-tpu-v4-8) or a path to a config .py file with get_config(). Override any key with --set
(dotted, typed; unknown keys are errors). Checkpoints, TensorBoard logs, validation grids, the loss
curve and the final export (Flax + PyTorch-diffusers) go to run.output_dir. --resume continues from
the newest checkpoint with the exact data position and random state; SIGINT/SIGTERM save first.

Multi-host: on a TPU pod run the same command on every worker. Elsewhere pass --coordinator,
--num-processes and --process-id to every process (CPU processes use gloo collectives).

examples:
  controlsprint train tiny --set data.path=data/synth --set run.steps=50
  controlsprint train default-canny --resume
  controlsprint train my_config.py --set optim.learning_rate=3e-5 --set mesh.fsdp=4
  controlsprint train tiny --coordinator 127.0.0.1:12355 --num-processes 2 --process-id 0"""
USES_JAX = True

REPO = Path(__file__).resolve().parents[2]


def config_dirs() -> list[Path]:
    return [Path.cwd() / "train" / "configs", REPO / "train" / "configs"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="config name (train/configs) or path to a .py file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--print-config", action="store_true", help="print the final config as JSON and exit")
    parser.add_argument("--coordinator", metavar="HOST:PORT", help="multi-process: the coordinator address")
    parser.add_argument("--num-processes", type=int, metavar="N", help="multi-process: number of processes")
    parser.add_argument("--process-id", type=int, metavar="I", help="multi-process: this process's index")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_train_config(spec: str, assignments: list[str]):
    from controlsprint.config import load_config_module, override
    from controlsprint.errors import UserError
    from controlsprint.training.config import TrainConfig, check_config

    config = load_config_module(spec, config_dirs()).get_config()
    if not isinstance(config, TrainConfig):
        raise UserError(f"config {spec}: get_config() must return a TrainConfig")
    config = override(config, assignments)
    check_config(config)
    return config


def run(args: argparse.Namespace) -> int:
    import json

    from controlsprint.config import to_dict

    config = load_train_config(args.config, args.set)
    if args.print_config:
        print(json.dumps(to_dict(config), indent=2))
        return 0
    from controlsprint.training.sharding import initialize_distributed
    from controlsprint.training.trainer import Interrupted, train

    initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    try:
        summary = train(config, resume=args.resume, progress=not args.no_progress)
    except Interrupted as stopped:
        print(f"controlsprint train: {stopped}", file=sys.stderr)
        return stopped.exit_code
    print(json.dumps(summary))
    return 0
