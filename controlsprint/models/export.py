"""Export a ControlNet or a whole pipeline as PyTorch-diffusers and/or Flax folders, with a model card.

The PyTorch folder is what `diffusers.ControlNetModel.from_pretrained(dir)` (or
`StableDiffusionPipeline.from_pretrained(dir)`) loads; the Flax folder is our own safetensors layout.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from controlsprint.errors import UserError
from controlsprint.models.io import load_component
from controlsprint.models.pipeline import META_FILE, load_pipeline, read_meta, save_component, save_pipeline

FORMATS = ("pytorch", "flax", "both")


def _formats(fmt: str) -> tuple[str, ...]:
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    return ("pytorch", "flax") if fmt == "both" else (fmt,)


def model_card(*, kind: str, name: str, meta: Mapping[str, Any]) -> str:
    """README.md with the YAML front matter the Hugging Face Hub reads (base_model, tags, library)."""
    condition = meta.get("condition")
    tags = ["controlsprint", "jax", "flax", "stable-diffusion", "diffusers", "text-to-image"]
    if kind == "controlnet":
        tags += ["controlnet"] + ([f"controlnet-{condition}"] if condition else [])
    front = {
        "license": meta.get("license", "apache-2.0"),
        "library_name": "diffusers",
        "base_model": meta.get("base_model", "unknown"),
        "tags": tags,
        "inference": True,
    }
    yaml_lines = ["---"]
    for key, value in front.items():
        if isinstance(value, list):
            yaml_lines.append(f"{key}:")
            yaml_lines.extend(f"- {v}" for v in value)
        else:
            yaml_lines.append(f"{key}: {json.dumps(value) if isinstance(value, str) else str(value).lower()}")
    yaml_lines.append("---")
    what = f"ControlNet ({condition})" if kind == "controlnet" and condition else kind.replace("_", " ")
    body = [
        f"# {name}: {what}",
        "",
        "Trained and exported with [controlsprint](https://github.com/controlsprint/controlsprint).",
        "",
        "## Use with diffusers (PyTorch)",
        "",
        "```python",
    ]
    if kind == "controlnet":
        body += [
            "from diffusers import ControlNetModel, StableDiffusionControlNetPipeline",
            'controlnet = ControlNetModel.from_pretrained("path/to/this/folder")',
            f'pipe = StableDiffusionControlNetPipeline.from_pretrained("{front["base_model"]}", controlnet=controlnet)',
        ]
    else:
        body += [
            "from diffusers import StableDiffusionPipeline",
            'pipe = StableDiffusionPipeline.from_pretrained("path")',
        ]
    body += ["```", "", "## Use with controlsprint (JAX)", "", "```bash"]
    if kind == "controlnet":
        body.append(f"controlsprint generate --controlnet {condition or 'NAME'}=path/to/this/folder ...")
    else:
        body.append("controlsprint generate --model path/to/this/folder ...")
    body += ["```", ""]
    if training := meta.get("training"):
        body += ["## Training", "", "```json", json.dumps(training, indent=2), "```", ""]
    if metrics := meta.get("eval"):
        body += ["## Evaluation", "", "```json", json.dumps(metrics, indent=2), "```", ""]
    return "\n".join(yaml_lines + [""] + body)


def _compatible_vae(folder: str | Path, current):
    """The VAE in `folder` (a vae/ folder, or a pipeline holding one) if the pipeline's UNet can use its
    latents: the same channels, downscale and scaling factor as the VAE it was trained with."""
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        folder = folder / "vae"
    replacement = load_component(folder, "vae")
    for field in ("latent_channels", "downscale", "scaling_factor"):
        new, old = getattr(replacement.config, field), getattr(current.config, field)
        if new != old:
            raise UserError(
                f"--vae {folder}: {field} {new} differs from the pipeline's {old}, "
                "so its latents are not the ones the UNet was trained on"
            )
    return replacement


def with_controlnet_gains(pipe, gains: dict[str, float]):
    """`pipe` with each named ControlNet's output convolutions scaled by its gain, recorded (multiplied
    into any earlier gain) in the pipeline's meta as `controlnet_gains`.

    Why: a ControlNet trained briefly may steer more faithfully at a conditioning scale above 1 (the
    embedded model's canny and gray ones do, docs/embedded-model.md); baking that scale into the
    weights makes scale 1, what every command and demo uses by default, that better setting.
    """
    from controlsprint.models.controlnet import with_output_gain

    recorded = dict(pipe.meta.get("controlnet_gains", {}))
    controlnets = dict(pipe.controlnets)
    for name, gain in gains.items():
        if name not in controlnets:
            known = ", ".join(controlnets) or "none"
            raise UserError(
                f"--controlnet-gain {name}={gain}: the pipeline has no ControlNet '{name}' ({known})"
            )
        if not (math.isfinite(gain) and gain > 0):
            raise UserError(f"--controlnet-gain {name}={gain}: the gain must be a positive number")
        component = controlnets[name]
        controlnets[name] = dataclasses.replace(component, params=with_output_gain(component.params, gain))
        recorded[name] = float(recorded.get(name, 1.0)) * gain
    return dataclasses.replace(
        pipe, controlnets=controlnets, meta={**pipe.meta, "controlnet_gains": recorded}
    )


def export(
    checkpoint: str | Path,
    out: str | Path,
    *,
    fmt: str = "pytorch",
    base_model: str | None = None,
    overwrite: bool = False,
    add_controlnets: dict[str, str] | None = None,
    add_temporal: str | Path | None = None,
    vae: str | Path | None = None,
    controlnet_gains: dict[str, float] | None = None,
    guidance_scale: float | None = None,
    storage_dtype: str = "float32",
) -> Path:
    """Export a ControlNet component folder or a pipeline folder to `out`; returns `out`.

    `add_controlnets` {name: folder} merges ControlNets into an exported pipeline (how the embedded
    model gathers its separately trained ControlNets); `add_temporal` likewise adds a video model's
    temporal layers (a `temporal/` folder); `vae` replaces the pipeline's VAE with a compatible one
    (the same latents, e.g. after `model.vae_part=decoder`); `controlnet_gains` {name: g} scales a
    ControlNet's residuals by g in its weights (see `with_controlnet_gains`); `guidance_scale` records
    the CFG scale the model is meant to be sampled at (`Pipeline.default_guidance`);
    `storage_dtype="float16"` halves the files.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    formats = _formats(fmt)
    if not checkpoint.exists():
        raise UserError(f"checkpoint {checkpoint} does not exist")
    if out.resolve() == checkpoint.resolve():
        raise UserError(f"--out {out} is the checkpoint itself; choose a new folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"--out {out} exists and is not empty; pass --overwrite to replace it")
    meta = read_meta(checkpoint)
    if base_model:
        meta["base_model"] = base_model
    if guidance_scale is not None:
        if not (math.isfinite(guidance_scale) and 0 <= guidance_scale <= 100):
            raise UserError(f"--guidance-scale {guidance_scale}: must be a number from 0 to 100")
        meta["guidance_scale"] = float(guidance_scale)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    is_pipeline = (checkpoint / "model_index.json").is_file()
    for flag, given in (
        ("--add-controlnet", add_controlnets),
        ("--add-temporal", add_temporal),
        ("--vae", vae),
        ("--controlnet-gain", controlnet_gains),
        ("--guidance-scale", guidance_scale is not None),
    ):
        if given and not is_pipeline:
            raise UserError(f"{flag} needs a pipeline folder; {checkpoint} has no model_index.json")
    if is_pipeline:
        from controlsprint.models.pipeline import load_controlnet

        pipe = load_pipeline(checkpoint)
        added = dict(load_controlnet(d, n) for n, d in (add_controlnets or {}).items())
        pipe = pipe.with_controlnets(added)
        if add_temporal:
            from controlsprint.models.video_io import load_temporal

            pipe = dataclasses.replace(pipe, temporal=load_temporal(add_temporal, pipe.unet.config))
        if vae:
            pipe = dataclasses.replace(pipe, vae=_compatible_vae(vae, pipe.vae))
        pipe = dataclasses.replace(pipe, meta={**pipe.meta, **meta})
        if "controlnet_gains" in pipe.meta:  # a ControlNet added under a gained one's name has no gain yet
            kept = {n: g for n, g in pipe.meta["controlnet_gains"].items() if n not in added}
            pipe = dataclasses.replace(pipe, meta={**pipe.meta, "controlnet_gains": kept})
        if controlnet_gains:
            pipe = with_controlnet_gains(pipe, controlnet_gains)
        for f in formats:
            save_pipeline(staging, pipe, fmt=f, storage_dtype=storage_dtype)
        kind, name = "pipeline", checkpoint.name
    elif (checkpoint / "config.json").is_file():
        data = json.loads((checkpoint / "config.json").read_text())
        kind = {"ControlNetModel": "controlnet", "UNet2DConditionModel": "unet", "AutoencoderKL": "vae"}.get(
            data.get("_class_name"),
            "text_encoder" if "CLIPTextModel" in data.get("architectures", []) else None,
        )
        if kind is None:
            raise UserError(f"{checkpoint}/config.json: not a model controlsprint can export")
        component = load_component(checkpoint, kind)
        for f in formats:
            save_component(staging, component.config, component.params, fmt=f, storage_dtype=storage_dtype)
        if meta:
            (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        name = checkpoint.name
    else:
        raise UserError(
            f"{checkpoint}: neither a pipeline folder (model_index.json) nor a model (config.json)"
        )
    (staging / "README.md").write_text(model_card(kind=kind, name=name, meta=meta))
    # Replace the destination only once everything is written.
    if out.exists():
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    staging.rename(out)
    return out
