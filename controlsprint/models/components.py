"""The model kinds a pipeline folder holds, and how to build, initialise and shape each one.

One `ComponentSpec` per kind ties together its config class, Flax module, the class name diffusers
or transformers writes in config.json, the torch weights file name, and dummy inputs for `init`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from controlsprint.models.configs import CLIPTextConfig, ControlNetConfig, UNetConfig, VAEConfig


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    kind: str
    config_class: type
    class_name: str  # _class_name in config.json (diffusers) / architectures[0] (transformers)
    torch_weights: str  # weights file name in the PyTorch layout
    module_factory: Callable[..., Any]
    dummy_inputs: Callable[[Any], tuple]


def _unet_inputs(cfg: UNetConfig) -> tuple:
    size = 2 ** (len(cfg.block_out_channels) - 1)
    return (
        jnp.zeros((1, size, size, cfg.in_channels)),
        jnp.zeros((1,)),
        jnp.zeros((1, 1, cfg.cross_attention_dim)),
    )


def _controlnet_inputs(cfg: ControlNetConfig) -> tuple:
    size = 2 ** (len(cfg.block_out_channels) - 1)
    pixels = size * 2 ** (len(cfg.conditioning_embedding_out_channels) - 1)
    return (
        jnp.zeros((1, size, size, cfg.in_channels)),
        jnp.zeros((1,)),
        jnp.zeros((1, 1, cfg.cross_attention_dim)),
        jnp.zeros((1, pixels, pixels, cfg.conditioning_channels)),
    )


def _vae_inputs(cfg: VAEConfig) -> tuple:
    return (jnp.zeros((1, cfg.downscale, cfg.downscale, cfg.in_channels)),)


def _text_inputs(cfg: CLIPTextConfig) -> tuple:
    return (jnp.zeros((1, cfg.max_position_embeddings), jnp.int32),)


def _factory(path: str, name: str) -> Callable[..., Any]:
    def build(config, dtype=jnp.float32, **kwargs):
        import importlib

        return getattr(importlib.import_module(path), name)(config, dtype=dtype, **kwargs)

    return build


SPECS: dict[str, ComponentSpec] = {
    "unet": ComponentSpec(
        "unet",
        UNetConfig,
        "UNet2DConditionModel",
        "diffusion_pytorch_model.safetensors",
        _factory("controlsprint.models.unet", "UNet2DConditionModel"),
        _unet_inputs,
    ),
    "controlnet": ComponentSpec(
        "controlnet",
        ControlNetConfig,
        "ControlNetModel",
        "diffusion_pytorch_model.safetensors",
        _factory("controlsprint.models.controlnet", "ControlNetModel"),
        _controlnet_inputs,
    ),
    "vae": ComponentSpec(
        "vae",
        VAEConfig,
        "AutoencoderKL",
        "diffusion_pytorch_model.safetensors",
        _factory("controlsprint.models.vae", "AutoencoderKL"),
        _vae_inputs,
    ),
    "text_encoder": ComponentSpec(
        "text_encoder",
        CLIPTextConfig,
        "CLIPTextModel",
        "model.safetensors",
        _factory("controlsprint.models.clip", "CLIPTextModel"),
        _text_inputs,
    ),
}


def spec_for_config(config: Any) -> ComponentSpec:
    # Exact type match: ControlNetConfig and UNetConfig share a base class.
    return next(s for s in SPECS.values() if type(config) is s.config_class)


def build_module(config: Any, dtype: jnp.dtype = jnp.float32, **kwargs):
    return spec_for_config(config).module_factory(config, dtype=dtype, **kwargs)


@functools.cache
def _jitted_init(config: Any) -> Callable[[jax.Array], dict]:
    spec = spec_for_config(config)
    module = spec.module_factory(config)
    return jax.jit(lambda rng: module.init(rng, *spec.dummy_inputs(config))["params"])


def init_params(config: Any, seed: int = 0) -> dict:
    """Freshly initialised float32 parameters for a model of `config`.

    Uses the "rbg" PRNG: XLA compiles its random-number programs about 3x faster than threefry's,
    which dominates the cost of initialising a model (one compile per config, cached).
    """
    return _jitted_init(config)(jax.random.key(seed, impl="rbg"))


def abstract_params(config: Any) -> dict:
    """The parameter tree's shapes and dtypes, without computing anything.

    Tracing a model's init takes seconds (most of loading a pipeline), so the shapes are also kept
    on disk beside the compilation cache, keyed by the config and the model code; a second process
    reads them back.
    """
    memo = _shape_memo_path(config)
    if memo is not None and memo.is_file():
        try:
            return _read_shapes(memo)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged memo is recomputed and rewritten
    spec = spec_for_config(config)
    module = spec.module_factory(config)
    shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), *spec.dummy_inputs(config))["params"])
    if memo is not None:
        _write_shapes(memo, shapes)
    return shapes


def _shape_memo_path(config: Any):
    import hashlib
    import json

    import flax

    from controlsprint.models.configs import config_to_json
    from controlsprint.runtime import artifact_dir, source_digest

    directory = artifact_dir("param-shapes")
    if directory is None:
        return None
    spec = spec_for_config(config)
    key = {
        "config": config_to_json(config, spec.class_name),
        "kind": spec.kind,
        "code": source_digest("controlsprint.models"),
        "versions": [jax.__version__, flax.__version__],
    }
    return directory / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest() + ".json")


def _write_shapes(path, shapes: dict) -> None:
    import contextlib
    import json

    from controlsprint.models.convert import flatten
    from controlsprint.runtime import write_atomically

    flat = {"/".join(k): [list(v.shape), str(v.dtype)] for k, v in flatten(shapes).items()}
    with contextlib.suppress(OSError):  # a cache that cannot be written is skipped
        write_atomically(path, json.dumps(flat).encode())


def _read_shapes(path) -> dict:
    import json

    from controlsprint.models.convert import unflatten

    flat = json.loads(path.read_text())
    return unflatten(
        {tuple(k.split("/")): jax.ShapeDtypeStruct(tuple(s), jnp.dtype(d)) for k, (s, d) in flat.items()}
    )
