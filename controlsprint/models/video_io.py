"""A pipeline folder's `temporal/` part: what turns its image UNet into the pseudo-3D video UNet.

    temporal/config.json            the VideoUNetConfig fields besides `unet` (frames, heads, kernel, hint)
    temporal/flax_model.safetensors {"temporal": ..., "hint_conv_in": ...} in our Flax layout

The spatial weights are the folder's own `unet/`, unchanged, so adding video to a pipeline (our embedded
model or a real SD1.5 folder) costs only the temporal layers. There is no diffusers class for these
layers, hence no PyTorch layout: they are always written in the Flax layout.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from controlsprint.config import from_dict, to_dict
from controlsprint.errors import UserError
from controlsprint.models.configs import UNetConfig
from controlsprint.models.convert import flatten, unflatten
from controlsprint.models.io import FLAX_WEIGHTS, Component, read_json
from controlsprint.models.video_configs import VideoUNetConfig

TEMPORAL_CLASS = "ControlsprintTemporalLayers"


def temporal_params(video_params: dict) -> dict:
    """The trained part of a video UNet's tree (everything but "spatial")."""
    return {k: v for k, v in video_params.items() if k != "spatial"}


def save_temporal(folder: str | Path, component: Component, *, storage_dtype: str = "float32") -> Path:
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fields = {k: v for k, v in to_dict(component.config).items() if k != "unet"}
    flat = {"/".join(k): np.ascontiguousarray(np.asarray(v)) for k, v in flatten(component.params).items()}
    if storage_dtype != "float32":
        flat = {k: v.astype(storage_dtype) for k, v in flat.items()}
    tmp = folder / (FLAX_WEIGHTS + ".tmp")
    save_file(flat, str(tmp), metadata={"format": "flax"})
    tmp.replace(folder / FLAX_WEIGHTS)
    (folder / "config.json").write_text(
        json.dumps({"_class_name": TEMPORAL_CLASS, **fields}, indent=2) + "\n"
    )
    return folder


def load_temporal(folder: str | Path, unet_config: UNetConfig) -> Component:
    """The temporal layers of `folder` for a pipeline whose image UNet has `unet_config`."""
    from controlsprint.models.io import _read_safetensors

    folder = Path(folder)
    data = read_json(folder / "config.json")
    if data.get("_class_name") != TEMPORAL_CLASS:
        raise UserError(
            f"{folder / 'config.json'}: not a temporal-layers config (_class_name {TEMPORAL_CLASS})"
        )
    fields = {k: v for k, v in data.items() if not k.startswith("_")}
    config = dataclasses.replace(
        from_dict(VideoUNetConfig, fields, source=str(folder / "config.json")), unet=unet_config
    )
    weights = folder / FLAX_WEIGHTS
    if not weights.is_file():
        raise UserError(f"{folder}: no weights found (expected {FLAX_WEIGHTS})")
    params = unflatten({tuple(k.split("/")): v for k, v in _read_safetensors(weights).items()})
    _check_shapes(params, config, weights)
    return Component("temporal", config, params)


def _check_shapes(params: dict, config: VideoUNetConfig, source: Path) -> None:
    import jax

    from controlsprint.models.video_unet import init_video_params

    expected = jax.eval_shape(lambda: temporal_params(init_video_params(config)))
    want = {k: tuple(v.shape) for k, v in flatten(expected).items()}
    got = {k: tuple(np.shape(v)) for k, v in flatten(params).items()}
    for key in sorted(want.keys() | got.keys()):
        if want.get(key) != got.get(key):
            raise UserError(
                f"{source}: weight {'/'.join(key)} has shape {got.get(key)}, the UNet expects {want.get(key)}"
            )
