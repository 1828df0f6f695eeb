"""Whole pipeline folders in the diffusers layout: model_index.json, unet/, vae/, text_encoder/,
tokenizer/, scheduler/, and ControlNets.

ControlNets live in `controlnet/` (diffusers' single-ControlNet layout; named by its `controlsprint.json`
"condition", else "controlnet") and in `controlnets/<name>/` (our layout for several). Each is a
component folder that `diffusers.ControlNetModel.from_pretrained` reads when in PyTorch format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controlsprint.errors import UserError
from controlsprint.models.io import Component, load_component, read_json, save_component
from controlsprint.models.tokenizer import CLIPTokenizer

META_FILE = "controlsprint.json"  # our own notes beside config.json: condition name, base model, training


@dataclasses.dataclass(frozen=True)
class Pipeline:
    unet: Component
    vae: Component
    text_encoder: Component
    tokenizer: CLIPTokenizer
    scheduler_config: Mapping[str, Any]
    controlnets: Mapping[str, Component] = dataclasses.field(default_factory=dict)
    folder: Path | None = None
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # The video UNet's temporal layers (video_io.py), when the folder has a temporal/ part.
    temporal: Component | None = None

    def with_controlnets(self, extra: Mapping[str, Component]) -> Pipeline:
        return dataclasses.replace(self, controlnets={**self.controlnets, **extra})

    @property
    def default_guidance(self) -> float:
        return guidance_of(self.meta)


# diffusers' Stable Diffusion pipelines' default classifier-free guidance scale
DEFAULT_GUIDANCE = 7.5


def guidance_of(meta: Mapping[str, Any]) -> float:
    """The CFG scale a model is meant to be sampled at: its `controlsprint.json` "guidance_scale" (set by
    `controlsprint export --guidance-scale`), else diffusers' 7.5. Every command and demo uses it when
    no guidance is given, so a model whose control holds best at a lower scale ships that scale."""
    return float(meta.get("guidance_scale", DEFAULT_GUIDANCE))


def model_guidance(folder: str | Path | None) -> float:
    """`guidance_of` a model folder's meta, without loading its weights (None: the default model)."""
    from controlsprint.models.default import resolve_model_dir

    return guidance_of(read_meta(resolve_model_dir(folder)))


def read_meta(folder: Path) -> dict:
    return read_json(folder / META_FILE) if (folder / META_FILE).is_file() else {}


def controlnet_name(folder: Path, default: str) -> str:
    return str(read_meta(folder).get("condition", default))


def load_controlnet(folder: str | Path, name: str | None = None) -> tuple[str, Component]:
    folder = Path(folder)
    component = load_component(folder, "controlnet")
    return name or controlnet_name(folder, folder.name), component


def load_pipeline(folder: str | Path, *, with_controlnets: bool = True) -> Pipeline:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"model folder {folder} does not exist")
    index = read_json(folder / "model_index.json")
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if part in index and not (folder / part).is_dir():
            raise UserError(f"model folder {folder}: model_index.json lists {part} but {part}/ is missing")
        if part not in index:
            raise UserError(f"model folder {folder}: model_index.json has no {part}")
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    controlnets = {}
    if with_controlnets:
        if (folder / "controlnet").is_dir():
            controlnets.update(
                [load_controlnet(folder / "controlnet", controlnet_name(folder / "controlnet", "controlnet"))]
            )
        if (folder / "controlnets").is_dir():
            for sub in sorted(p for p in (folder / "controlnets").iterdir() if p.is_dir()):
                controlnets.update([load_controlnet(sub, sub.name)])
    unet = load_component(folder / "unet", "unet")
    return Pipeline(
        unet=unet,
        vae=load_component(folder / "vae", "vae"),
        text_encoder=load_component(folder / "text_encoder", "text_encoder"),
        tokenizer=CLIPTokenizer.from_folder(folder / "tokenizer"),
        scheduler_config=read_json(scheduler_file),
        controlnets=controlnets,
        folder=folder,
        meta=read_meta(folder),
        temporal=_load_temporal_part(folder, unet.config),
    )


def _load_temporal_part(folder: Path, unet_config) -> Component | None:
    if not (folder / "temporal").is_dir():
        return None
    from controlsprint.models.video_io import load_temporal

    return load_temporal(folder / "temporal", unet_config)


def model_index(controlnet: bool) -> dict:
    index = {
        "_class_name": "StableDiffusionControlNetPipeline" if controlnet else "StableDiffusionPipeline",
        "_diffusers_version": "0.39.0",
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
    }
    if controlnet:
        index["controlnet"] = ["diffusers", "ControlNetModel"]
    return index


def save_pipeline(
    folder: str | Path, pipe: Pipeline, *, fmt: str = "flax", storage_dtype: str = "float32"
) -> Path:
    """Write `pipe` as a diffusers-layout folder; weights in `fmt` ("flax", "pytorch")."""
    folder = Path(folder)
    for name, component in (("unet", pipe.unet), ("vae", pipe.vae), ("text_encoder", pipe.text_encoder)):
        save_component(
            folder / name, component.config, component.params, fmt=fmt, storage_dtype=storage_dtype
        )
    pipe.tokenizer.save(folder / "tokenizer")
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(dict(pipe.scheduler_config), indent=2)
    )
    for name, component in pipe.controlnets.items():
        save_controlnet(folder / "controlnets" / name, component, name, fmt=fmt, storage_dtype=storage_dtype)
    if pipe.temporal is not None:
        from controlsprint.models.video_io import save_temporal

        save_temporal(folder / "temporal", pipe.temporal, storage_dtype=storage_dtype)
    (folder / "model_index.json").write_text(json.dumps(model_index(False), indent=2) + "\n")
    if pipe.meta:
        (folder / META_FILE).write_text(json.dumps(dict(pipe.meta), indent=2) + "\n")
    return folder


def save_controlnet(
    folder: Path,
    component: Component,
    name: str,
    *,
    fmt: str,
    meta: Mapping | None = None,
    storage_dtype: str = "float32",
) -> Path:
    save_component(folder, component.config, component.params, fmt=fmt, storage_dtype=storage_dtype)
    (folder / META_FILE).write_text(json.dumps({"condition": name, **(meta or {})}, indent=2) + "\n")
    return folder
