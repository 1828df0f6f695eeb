"""Shared pieces of the training tests: a tiny synthetic dataset, run configs, reading results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO

FAST = [
    "data.resolution=32",
    "run.batch_size=4",
    "run.validation_samples=1",
    "run.validation_steps=1",
    "run.log_every=1",
    "run.async_checkpoints=false",
]


def make_dataset(folder: Path, rows: int = 48) -> Path:
    from controlsprint.cli.main import main

    assert main(["synth", "--out", str(folder), "--num", str(rows), "--size", "32", "--no-progress"]) == 0
    return folder


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    sets = [f"data.path={data}", f"run.output_dir={out}", *FAST, *extra]
    return ["train", "tiny", "--no-progress", *[a for s in sets for a in ("--set", s)]]


def run_train_process(args: list[str], *, devices: int = 1, extra_env: dict | None = None, **popen):
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "controlsprint", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def exported_params(out: Path, kind: str = "controlnet", name: str = "canny") -> dict:
    from controlsprint.models.convert import flatten
    from controlsprint.models.io import load_component

    folder = out / "export" / "pipeline" / ("controlnets/" + name if kind == "controlnet" else kind)
    return {k: np.asarray(v) for k, v in flatten(load_component(folder, kind).params).items()}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)
