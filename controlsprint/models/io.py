"""Load and save model components: diffusers/transformers PyTorch safetensors, or our Flax layout.

A component folder holds `config.json` and one of:
  flax_model.safetensors                    our layout: Flax names joined by "/", Flax array layouts
  diffusion_pytorch_model[.fp16].safetensors diffusers' PyTorch layout (possibly sharded with an index)
  model[.fp16].safetensors                  transformers' PyTorch layout (text encoder)
Pickle-based files (.bin, .ckpt, .pt, .pth) are refused: loading them can run arbitrary code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from controlsprint.errors import UserError
from controlsprint.models.components import SPECS, abstract_params, spec_for_config
from controlsprint.models.configs import config_from_json, config_to_json
from controlsprint.models.convert import (
    flatten,
    flax_to_torch,
    rename_legacy_vae_attention,
    torch_to_flax,
    unflatten,
)

FLAX_WEIGHTS = "flax_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
DIFFUSERS_VERSION = "0.39.0"


@dataclasses.dataclass(frozen=True)
class Component:
    """A loaded model: its config and float32 parameters (numpy leaves; put them on devices yourself)."""

    kind: str
    config: Any
    params: dict

    def module(self, dtype=None, **kwargs):
        import jax.numpy as jnp

        if self.kind == "temporal":  # the temporal layers' module is the whole video UNet (video_io.py)
            from controlsprint.models.video_unet import VideoUNet

            return VideoUNet(self.config, dtype=dtype or jnp.float32, **kwargs)
        return SPECS[self.kind].module_factory(self.config, dtype=dtype or jnp.float32, **kwargs)


def read_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"{path} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _read_safetensors(path: Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError, safe_open

    try:
        out = {}
        # framework="numpy" reads bfloat16 too (as ml_dtypes' bfloat16); we keep float32 numpy copies.
        # Not "flax": it makes a device array per tensor, an eager op each (seconds for a pipeline).
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118  (safe_open is not a dict)
                value = np.asarray(f.get_tensor(key))
                out[key] = (
                    value.astype(np.float32)
                    if value.dtype.kind == "f" or value.dtype.name == "bfloat16"
                    else value
                )
        return out
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a readable safetensors file ({err})") from None


def _torch_weight_files(folder: Path, name: str) -> list[Path]:
    stem = name.removesuffix(".safetensors")
    for candidate in (name, f"{stem}.fp16.safetensors"):
        if (folder / candidate).is_file():
            return [folder / candidate]
        index = folder / f"{candidate}.index.json"
        if index.is_file():
            shards = sorted(set(read_json(index).get("weight_map", {}).values()))
            missing = [s for s in shards if not (folder / s).is_file()]
            if missing or not shards:
                raise UserError(f"{index}: shard {missing[0] if missing else '(none listed)'} is missing")
            return [folder / s for s in shards]
    return []


def load_component(folder: str | Path, kind: str) -> Component:
    """Load one component folder (config.json + weights) as `kind` (unet, controlnet, vae, text_encoder)."""
    folder = Path(folder)
    spec = SPECS[kind]
    if not folder.is_dir():
        raise UserError(f"{kind} folder {folder} does not exist")
    config = config_from_json(
        spec.config_class, read_json(folder / "config.json"), source=str(folder / "config.json")
    )
    target = abstract_params(config)
    if (folder / FLAX_WEIGHTS).is_file():
        flat = _read_safetensors(folder / FLAX_WEIGHTS)
        params = unflatten({tuple(k.split("/")): v for k, v in flat.items()})
        _check_same_tree(params, target, folder / FLAX_WEIGHTS)
        return Component(kind, config, params)
    files = _torch_weight_files(folder, spec.torch_weights)
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UserError(
                f"{folder}: only pickle checkpoints ({', '.join(pickles)}) found; they are refused because "
                "loading them can run code. Convert to safetensors first"
            )
        raise UserError(f"{folder}: no weights found (expected {FLAX_WEIGHTS} or {spec.torch_weights})")
    state: dict[str, np.ndarray] = {}
    for f in files:
        state.update(_read_safetensors(f))
    rename = rename_legacy_vae_attention if kind == "vae" else None
    params = torch_to_flax(state, target, source=str(folder), rename=rename)
    return Component(kind, config, params)


def _check_same_tree(params: dict, target: dict, source: Path) -> None:
    got, want = flatten(params), {k: tuple(v.shape) for k, v in flatten(target).items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        example = "/".join(missing[0] if missing else extra[0])
        what = "missing" if missing else "unexpected"
        raise UserError(f"{source}: {len(missing or extra)} {what} weight(s), e.g. {example}")
    for path, shape in want.items():
        if tuple(got[path].shape) != shape:
            raise UserError(
                f"{source}: weight {'/'.join(path)} has shape {tuple(got[path].shape)}, the model expects {shape}"
            )


def save_component(
    folder: str | Path, config: Any, params: dict, *, fmt: str = "flax", storage_dtype: str = "float32"
) -> Path:
    """Write config.json plus weights in our Flax layout (`fmt="flax"`) or PyTorch layout (`"pytorch"`).

    `storage_dtype="float16"` halves the files (as SD checkpoints ship); loading casts back to float32.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = spec_for_config(config)
    data = config_to_json(config, spec.class_name)
    if "_class_name" in data:
        data["_diffusers_version"] = DIFFUSERS_VERSION
    else:
        data["torch_dtype"] = "float32"
    if fmt == "flax":
        flat = {"/".join(k): np.ascontiguousarray(np.asarray(v)) for k, v in flatten(params).items()}
        target = folder / FLAX_WEIGHTS
    elif fmt == "pytorch":
        flat = flax_to_torch(params)
        target = folder / spec.torch_weights
    else:
        raise UserError(f"unknown weights format {fmt!r}; use flax or pytorch")
    if storage_dtype != "float32":
        flat = {k: v.astype(storage_dtype) if v.dtype.kind == "f" else v for k, v in flat.items()}
    # Write-then-rename: an interrupted save never leaves a truncated weights file behind.
    tmp = target.with_suffix(".tmp")
    save_file(flat, str(tmp), metadata={"format": "pt" if fmt == "pytorch" else "flax"})
    tmp.replace(target)
    (folder / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    return folder
