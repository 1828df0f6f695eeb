"""Run logging: TensorBoard scalars and images, a loss-curve PNG, optional Weights & Biases.

Only process 0 writes. wandb is used when installed and CONTROLSPRINT_WANDB=1 (it would otherwise
try the network on a machine that may have none).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class RunLogger:
    def __init__(self, directory: Path, *, enabled: bool, config: dict):
        self.directory = Path(directory)
        self.enabled = enabled
        self.history: list[dict] = []
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        from tensorboardX import SummaryWriter

        self.directory.mkdir(parents=True, exist_ok=True)
        self._tb = SummaryWriter(str(self.directory / "tensorboard"))
        self._tb.add_text("config", f"```\n{json.dumps(config, indent=2)}\n```", 0)
        if os.environ.get("CONTROLSPRINT_WANDB") == "1":
            try:
                import wandb
            except ImportError:
                wandb = None
            if wandb is not None:
                self._wandb = wandb.init(project="controlsprint", config=config, dir=str(self.directory))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.history.append({"step": step, **values})
        for key, value in values.items():
            self._tb.add_scalar(f"train/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def validation(self, step: int, values: dict[str, float]) -> None:
        if self.enabled:
            for key, value in values.items():
                self._tb.add_scalar(f"validation/{key}", value, step)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        if self.enabled:
            self._tb.add_image(tag, image, step, dataformats="HWC")

    def loss_curve(self) -> Path | None:
        """Write loss_curve.png from the logged history; returns its path."""
        if not self.enabled or not self.history:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [h["step"] for h in self.history]
        losses = [h["loss"] for h in self.history]
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, losses, lw=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.directory / "loss_curve.png"
        fig.savefig(path)
        plt.close(fig)
        (self.directory / "history.json").write_text(json.dumps(self.history))
        return path

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
