"""Build an `InferenceCore` from what a user names: a model folder and extra ControlNet folders."""

from __future__ import annotations

from collections.abc import Mapping

from controlsprint.models.default import resolve_model_dir


def load_core(model: str | None = None, controlnets: Mapping[str, str] | None = None):
    """The core for `model` (default: the embedded model) plus ControlNets {name: folder}."""
    from controlsprint.inference.core import InferenceCore
    from controlsprint.models.pipeline import load_controlnet, load_pipeline

    pipeline = load_pipeline(resolve_model_dir(model))
    extra = dict(load_controlnet(folder, name) for name, folder in (controlnets or {}).items())
    return InferenceCore(pipeline.with_controlnets(extra))
