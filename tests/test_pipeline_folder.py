"""Whole pipeline folders: save, load, export to PyTorch, and diffusers reads the export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controlsprint.errors import UserError
from controlsprint.models.components import init_params
from controlsprint.models.configs import TINY_CONTROLNET, TINY_TEXT, TINY_UNET, TINY_VAE
from controlsprint.models.convert import flatten
from controlsprint.models.io import Component
from controlsprint.models.pipeline import Pipeline, load_pipeline, save_pipeline
from controlsprint.schedulers import SD15_SCHEDULER_CONFIG
from tests.test_tokenizer import tiny_tokenizer


def tiny_pipeline() -> Pipeline:
    tokenizer = tiny_tokenizer(max_length=77)
    text_config = TINY_TEXT.__class__(
        **{
            **TINY_TEXT.__dict__,
            "vocab_size": len(tokenizer.vocab),
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
        }
    )
    return Pipeline(
        unet=Component("unet", TINY_UNET, init_params(TINY_UNET, 0)),
        vae=Component("vae", TINY_VAE, init_params(TINY_VAE, 1)),
        text_encoder=Component("text_encoder", text_config, init_params(text_config, 2)),
        tokenizer=tokenizer,
        scheduler_config=dict(SD15_SCHEDULER_CONFIG),
        controlnets={"canny": Component("controlnet", TINY_CONTROLNET, init_params(TINY_CONTROLNET, 3))},
        meta={"base_model": "controlsprint/tiny"},
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe") / "tiny"
    pipe = tiny_pipeline()
    save_pipeline(folder, pipe)
    return pipe, folder


def test_pipeline_round_trip(saved):
    pipe, folder = saved
    loaded = load_pipeline(folder)
    assert set(loaded.controlnets) == {"canny"}
    for name in ("unet", "vae", "text_encoder"):
        a, b = flatten(getattr(pipe, name).params), flatten(getattr(loaded, name).params)
        assert a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), b[k]) for k in a)
    assert (loaded.tokenizer(["red circle"]) == pipe.tokenizer(["red circle"])).all()
    assert loaded.scheduler_config["beta_schedule"] == "scaled_linear"
    assert loaded.meta["base_model"] == "controlsprint/tiny"


def test_pytorch_export_loads_in_diffusers(saved, tmp_path, cli):
    pytest.importorskip("torch")
    from diffusers import ControlNetModel, StableDiffusionPipeline

    _, folder = saved
    code, _, err = cli("export", folder, "--out", tmp_path / "pt", "--format", "pytorch")
    assert code == 0, err
    sd = StableDiffusionPipeline.from_pretrained(tmp_path / "pt", safety_checker=None)
    assert sd.unet.config.block_out_channels == list(TINY_UNET.block_out_channels)
    ids = sd.tokenizer("red circle", padding="max_length", max_length=77).input_ids
    assert ids == load_pipeline(folder).tokenizer(["red circle"])[0].tolist()
    cn = ControlNetModel.from_pretrained(tmp_path / "pt" / "controlnets" / "canny")
    assert cn.config.conditioning_embedding_out_channels == list(
        TINY_CONTROLNET.conditioning_embedding_out_channels
    )
    front = (tmp_path / "pt" / "README.md").read_text().split("---")[1]
    assert "base_model" in front and "controlsprint" in front


def test_export_merges_controlnets_and_halves_storage(saved, tmp_path, cli):
    from controlsprint.models.pipeline import save_controlnet

    pipe, folder = saved
    extra = Component("controlnet", TINY_CONTROLNET, init_params(TINY_CONTROLNET, 9))
    save_controlnet(tmp_path / "depth", extra, "depth", fmt="flax")
    full_size = (folder / "unet" / "flax_model.safetensors").stat().st_size
    code, _, err = cli(
        "export", folder, "--out", tmp_path / "merged", "--format", "flax", "--half",
        "--add-controlnet", f"depth={tmp_path / 'depth'}",
    )  # fmt: skip
    assert code == 0, err
    merged = load_pipeline(tmp_path / "merged")
    assert set(merged.controlnets) == {"canny", "depth"}
    half_size = (tmp_path / "merged" / "unet" / "flax_model.safetensors").stat().st_size
    assert half_size < 0.6 * full_size
    a, b = flatten(extra.params), flatten(merged.controlnets["depth"].params)
    assert all(np.allclose(np.asarray(a[k]), b[k], rtol=1e-3, atol=1e-4) for k in a)  # float16 rounding
    code, _, err = cli("export", folder, "--out", tmp_path / "bad", "--add-controlnet", "depth")
    assert (
        code == 2
        and err.strip() == "controlsprint export: error: --add-controlnet depth: expected NAME=VALUE"
    )


@pytest.mark.parametrize("part", ["unet", "tokenizer", "model_index.json"])
def test_missing_parts_are_named(saved, tmp_path, part):
    import shutil

    _, folder = saved
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    target = copy / part
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(UserError, match=part.replace(".", r"\.")):
        load_pipeline(copy)


def test_model_index_without_a_component(saved, tmp_path):
    import shutil

    _, folder = saved
    shutil.copytree(folder, tmp_path / "c")
    index = json.loads((tmp_path / "c" / "model_index.json").read_text())
    del index["vae"]
    (tmp_path / "c" / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UserError, match="model_index.json has no vae"):
        load_pipeline(tmp_path / "c")


def test_export_replaces_the_vae_with_one_of_the_same_latents(saved, tmp_path, cli):
    import dataclasses

    from controlsprint.models.pipeline import save_component

    pipe, folder = saved
    sharper = Component("vae", TINY_VAE, init_params(TINY_VAE, 7))  # same config, other weights
    save_component(tmp_path / "vae", sharper.config, sharper.params, fmt="flax")
    code, _, err = cli(
        "export", folder, "--out", tmp_path / "swapped", "--format", "flax", "--vae", tmp_path / "vae"
    )
    assert code == 0, err
    swapped = load_pipeline(tmp_path / "swapped")
    a, b = flatten(sharper.params), flatten(swapped.vae.params)
    assert all(np.array_equal(np.asarray(a[k]), b[k]) for k in a)
    unet_a, unet_b = flatten(pipe.unet.params), flatten(swapped.unet.params)
    assert all(np.array_equal(np.asarray(unet_a[k]), unet_b[k]) for k in unet_a)  # only the VAE changed

    other = dataclasses.replace(TINY_VAE, latent_channels=TINY_VAE.latent_channels + 4)
    save_component(tmp_path / "wide", other, init_params(other, 0), fmt="flax")
    code, _, err = cli("export", folder, "--out", tmp_path / "bad", "--vae", tmp_path / "wide")
    assert code != 0 and not (tmp_path / "bad").exists()
    assert err.strip().count("\n") == 0 and "latent_channels" in err and "--vae" in err
