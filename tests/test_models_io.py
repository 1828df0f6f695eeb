"""Loading, saving and exporting models: layouts, round trips, the zero-conv invariant, clear errors."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from controlsprint.errors import UserError
from controlsprint.models.components import init_params
from controlsprint.models.configs import TINY_CONTROLNET, TINY_TEXT, TINY_UNET, TINY_VAE
from controlsprint.models.convert import flatten
from controlsprint.models.io import Component, load_component, save_component
from tests.tiny_models import nchw, nhwc

rng = np.random.default_rng(1)
LATENTS = rng.standard_normal((1, 16, 16, 4)).astype(np.float32)
TEXT = rng.standard_normal((1, 5, 32)).astype(np.float32)
COND = rng.random((1, 128, 128, 3)).astype(np.float32)


def _perturbed(params, scale=0.05, seed=0):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree_util.tree_unflatten(
        tree,
        [np.asarray(x + scale * jax.random.normal(k, x.shape)) for x, k in zip(leaves, keys, strict=True)],
    )


def test_controlnet_at_init_adds_exactly_nothing():
    unet = Component("unet", TINY_UNET, init_params(TINY_UNET, 0))
    cn = Component("controlnet", TINY_CONTROLNET, init_params(TINY_CONTROLNET, 1))
    down, mid = cn.module().apply({"params": cn.params}, LATENTS, 10.0, TEXT, COND, 1.0)
    assert all(float(np.abs(d).max()) == 0.0 for d in down) and float(np.abs(mid).max()) == 0.0
    base = unet.module().apply({"params": unet.params}, LATENTS, 10.0, TEXT)
    controlled = unet.module().apply({"params": unet.params}, LATENTS, 10.0, TEXT, down, mid)
    np.testing.assert_array_equal(np.asarray(base), np.asarray(controlled))
    # ...and not because the whole ControlNet is zero: only its zero convs are.
    assert float(np.abs(cn.params["conv_in"]["kernel"]).max()) > 0


@pytest.mark.parametrize(
    "config", [TINY_UNET, TINY_CONTROLNET, TINY_VAE, TINY_TEXT], ids=lambda c: type(c).__name__
)
@pytest.mark.parametrize("fmt", ["flax", "pytorch"])
def test_save_load_round_trip_is_exact(tmp_path, config, fmt):
    params = _perturbed(init_params(config, 3))
    kind = {"UNetConfig": "unet", "ControlNetConfig": "controlnet", "VAEConfig": "vae"}.get(
        type(config).__name__, "text_encoder"
    )
    save_component(tmp_path / kind, config, params, fmt=fmt)
    loaded = load_component(tmp_path / kind, kind)
    assert loaded.config == config
    original, restored = flatten(params), flatten(loaded.params)
    assert original.keys() == restored.keys()
    for key, value in original.items():
        np.testing.assert_array_equal(np.asarray(value), restored[key])


def test_exported_controlnet_loads_in_diffusers_and_reproduces_ours(tmp_path, cli):
    torch = pytest.importorskip("torch")
    from diffusers import ControlNetModel

    params = _perturbed(init_params(TINY_CONTROLNET, 5))
    save_component(tmp_path / "ours", TINY_CONTROLNET, params, fmt="flax")
    (tmp_path / "ours" / "controlsprint.json").write_text(
        json.dumps({"condition": "canny", "base_model": "me/tiny"})
    )
    code, out, err = cli("export", tmp_path / "ours", "--out", tmp_path / "hub", "--format", "both")
    assert code == 0, err
    hub = tmp_path / "hub"
    assert {"config.json", "diffusion_pytorch_model.safetensors", "flax_model.safetensors", "README.md"} <= {
        p.name for p in hub.iterdir()
    }
    card = (hub / "README.md").read_text()
    front = card.split("---")[1]
    assert 'base_model: "me/tiny"' in front and "- controlnet-canny" in front and "library_name" in front

    theirs = ControlNetModel.from_pretrained(hub).eval()
    ours = load_component(tmp_path / "ours", "controlnet")
    t = np.array([321.0], dtype=np.float32)
    down, mid = ours.module().apply({"params": ours.params}, LATENTS, t, TEXT, COND, 0.8)
    with torch.no_grad():
        ref_down, ref_mid = theirs(
            torch.from_numpy(nchw(LATENTS)),
            torch.from_numpy(t),
            torch.from_numpy(TEXT),
            torch.from_numpy(nchw(COND)),
            0.8,
            return_dict=False,
        )
    for a, b in zip(down, ref_down, strict=True):
        np.testing.assert_allclose(np.asarray(a), nhwc(b.numpy()), atol=1e-4)
    np.testing.assert_allclose(np.asarray(mid), nhwc(ref_mid.numpy()), atol=1e-4)
    assert float(np.abs(np.asarray(mid)).max()) > 1e-3


def test_legacy_vae_attention_names_load(tmp_path):
    from safetensors.numpy import load_file, save_file

    params = _perturbed(init_params(TINY_VAE, 0))
    save_component(tmp_path / "vae", TINY_VAE, params, fmt="pytorch")
    weights = tmp_path / "vae" / "diffusion_pytorch_model.safetensors"
    legacy_names = {".to_q.": ".query.", ".to_k.": ".key.", ".to_v.": ".value.", ".to_out.0.": ".proj_attn."}
    state = {}
    for key, value in load_file(weights).items():
        for new, old in legacy_names.items():
            key = key.replace(new, old)
        # old checkpoints stored these projections as 1x1 convs
        state[key] = (
            value[:, :, None, None]
            if (".query." in key or ".proj_attn." in key) and value.ndim == 2
            else value
        )
    save_file(state, weights)
    loaded = load_component(tmp_path / "vae", "vae")
    for key, value in flatten(params).items():
        np.testing.assert_array_equal(np.asarray(value), flatten(loaded.params)[key])


def _drop_weight(path, key):
    from safetensors.numpy import load_file, save_file

    state = load_file(path)
    del state[key]
    save_file(state, path)


def _saved(tmp_path, config=TINY_CONTROLNET, fmt="pytorch"):
    return save_component(tmp_path / "cn", config, init_params(config, 0), fmt=fmt)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "config.json is missing"),
        (lambda d: (d / "config.json").write_text("{nope"), "not valid JSON"),
        (lambda d: (d / "diffusion_pytorch_model.safetensors").unlink(), "no weights found"),
        (
            lambda d: (d / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage"),
            "not a readable safetensors",
        ),
        (
            lambda d: (
                (d / "diffusion_pytorch_model.safetensors").unlink(),
                (d / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04pickle"),
            ),
            "only pickle checkpoints",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "block_out_channels": [32, 96]})
            ),
            "has shape",
        ),
        (
            lambda d: _drop_weight(d / "diffusion_pytorch_model.safetensors", "conv_in.bias"),
            "1 weight(s) missing",
        ),
        (
            lambda d: (d / "config.json").write_text(
                json.dumps({**json.loads((d / "config.json").read_text()), "class_embed_type": "timestep"})
            ),
            "class_embed_type='timestep' is not supported",
        ),
    ],
    ids=[
        "no-config",
        "bad-json",
        "no-weights",
        "corrupt",
        "pickle-only",
        "wrong-shape",
        "missing",
        "unsupported",
    ],
)
def test_broken_folders_give_one_line_errors(tmp_path, breakage, message):
    folder = _saved(tmp_path)
    breakage(folder)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        load_component(folder, "controlnet")
    assert "\n" not in str(info.value)


def test_export_cli_errors_are_one_line(tmp_path, cli):
    code, _, err = cli("export", tmp_path / "missing", "--out", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
    folder = _saved(tmp_path)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    code, _, err = cli("export", folder, "--out", tmp_path / "busy")
    assert code == 2 and "not empty" in err
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine", "nothing lost"
