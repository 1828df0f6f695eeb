"""Where the model comes from when the user names none: --model, $CONTROLSPRINT_MODEL, the embedded one.

The embedded default model (a small Stable-Diffusion-architecture pipeline with ControlNets, trained by
the project itself on its synthetic data) ships as package data in `controlsprint/embedded/tiny-sd`.
"""

from __future__ import annotations

import os
from pathlib import Path

from controlsprint.errors import UserError

EMBEDDED_MODEL_DIR = Path(__file__).resolve().parents[1] / "embedded" / "tiny-sd"
MODEL_ENV = "CONTROLSPRINT_MODEL"


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    if model:
        return Path(model)
    if env := os.environ.get(MODEL_ENV):
        return Path(env)
    if (EMBEDDED_MODEL_DIR / "model_index.json").is_file():
        return EMBEDDED_MODEL_DIR
    raise UserError(f"no --model given, ${MODEL_ENV} is unset and the embedded default model is missing")
