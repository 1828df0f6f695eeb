"""PyTorch state dicts <-> Flax parameter trees, by naming rule.

Our Flax modules use diffusers'/transformers' attribute names, with list indices joined by "_"
(`down_blocks.0.resnets.1.conv1.weight` <-> `down_blocks_0/resnets_1/conv1/kernel`). The leaf names
and layouts differ by kind of layer:

  torch `weight` of Conv2d  [O, I, kh, kw]  <->  flax `kernel` [kh, kw, I, O]
  torch `weight` of Linear  [O, I]          <->  flax `kernel` [I, O]
  torch `weight` of a norm                  <->  flax `scale`
  torch `weight` of an Embedding            <->  flax `embedding`

The target tree (shapes from `jax.eval_shape` of the module's init) decides which case applies, so
one converter serves every model. Shapes are checked; missing and unexpected weights are errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from controlsprint.errors import UserError

# Attribute names that hold lists of submodules: only these take an index suffix.
LIST_NAMES = frozenset(
    {
        "down_blocks",
        "up_blocks",
        "resnets",
        "attentions",
        "downsamplers",
        "upsamplers",
        "transformer_blocks",
        "controlnet_down_blocks",
        "blocks",
        "layers",
        "to_out",
        "net",
    }
)
# Buffers some checkpoints carry that are not parameters.
IGNORED_TORCH_KEYS = (re.compile(r"(^|\.)position_ids$"), re.compile(r"(^|\.)num_batches_tracked$"))

Path = tuple[str, ...]


def flatten(tree: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, (*prefix, key)))
        else:
            flat[(*prefix, key)] = value
    return flat


def unflatten(flat: Mapping[Path, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def torch_key_to_module_path(key: str) -> tuple[Path, str]:
    """`a.0.b.weight` -> (("a_0", "b"), "weight")."""
    parts = key.split(".")
    path: list[str] = []
    for part in parts[:-1]:
        if part.isdigit() and path:
            path[-1] = f"{path[-1]}_{part}"
        else:
            path.append(part)
    return tuple(path), parts[-1]


def module_path_to_torch_key(path: Path, torch_leaf: str) -> str:
    """Inverse of `torch_key_to_module_path` for our own module trees."""
    parts = []
    for name in path:
        base, _, index = name.rpartition("_")
        parts.extend([base, index] if index.isdigit() and base in LIST_NAMES else [name])
    return ".".join([*parts, torch_leaf])


def _to_flax_leaf(value: np.ndarray, leaf: str, target_shape: tuple[int, ...], key: str) -> np.ndarray:
    if leaf == "kernel":
        if (
            value.ndim == 4 and len(target_shape) == 2
        ):  # 1x1 conv stored where we use a Dense (old VAE attention)
            value = value[:, :, 0, 0]
        if value.ndim == 2 and len(target_shape) == 4:  # Linear stored where we use a 1x1 conv
            value = value[:, :, None, None]
        value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    if tuple(value.shape) != tuple(target_shape):
        raise UserError(
            f"weight {key} has shape {tuple(value.shape)}, the model expects {tuple(target_shape)} "
            "(does config.json match the checkpoint?)"
        )
    return value


def torch_to_flax(
    state: Mapping[str, np.ndarray],
    target: Mapping[str, Any],
    *,
    source: str,
    rename: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """Convert a torch-named state dict (numpy arrays) onto the structure of `target` (a param tree).

    `rename` maps legacy checkpoint names onto current ones before conversion.
    """
    shapes = {path: tuple(leaf.shape) for path, leaf in flatten(target).items()}
    out: dict[Path, np.ndarray] = {}
    unexpected = []
    for raw_key, value in state.items():
        if any(p.search(raw_key) for p in IGNORED_TORCH_KEYS):
            continue
        key = rename(raw_key) if rename else raw_key
        module, leaf = torch_key_to_module_path(key)
        if leaf == "bias":
            candidates = [(*module, "bias")]
        else:
            candidates = [(*module, name) for name in ("kernel", "scale", "embedding")]
        path = next((c for c in candidates if c in shapes), None)
        if path is None:
            unexpected.append(raw_key)
            continue
        out[path] = _to_flax_leaf(np.asarray(value), path[-1], shapes[path], raw_key)
    if unexpected:
        raise UserError(
            f"{source}: {len(unexpected)} weight(s) the model does not have, e.g. {unexpected[0]} "
            "(does config.json match the checkpoint?)"
        )
    missing = sorted(set(shapes) - set(out))
    if missing:
        example = module_path_to_torch_key(missing[0][:-1], "bias" if missing[0][-1] == "bias" else "weight")
        raise UserError(f"{source}: {len(missing)} weight(s) missing, e.g. {example}")
    return unflatten(out)


def flax_to_torch(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Our Flax parameter tree as a torch-named, torch-layout state dict (contiguous float arrays)."""
    state = {}
    for path, value in flatten(params).items():
        value = np.asarray(value)
        leaf = path[-1]
        if leaf == "kernel":
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        torch_leaf = "bias" if leaf == "bias" else "weight"
        state[module_path_to_torch_key(path[:-1], torch_leaf)] = np.ascontiguousarray(value)
    return state


def rename_legacy_vae_attention(key: str) -> str:
    """Old diffusers VAE checkpoints (SD1.x era) name the mid attention query/key/value/proj_attn."""
    replacements = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.", ".proj_attn.": ".to_out.0."}
    for old, new in replacements.items():
        key = key.replace(old, new)
    return key
