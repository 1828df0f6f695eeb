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


def with_live_zero_convs(pipe):
    """ControlNets straight from init add nothing; perturb them so control has a visible effect."""
    import dataclasses

    import jax

    from controlsprint.models.io import Component

    live = {}
    for i, (name, component) in enumerate(pipe.controlnets.items()):
        leaves, tree = jax.tree_util.tree_flatten(component.params)
        noise = np.random.default_rng(i)
        leaves = [np.asarray(x) + 0.02 * noise.standard_normal(x.shape).astype(np.float32) for x in leaves]
        live[name] = Component("controlnet", component.config, jax.tree_util.tree_unflatten(tree, leaves))
    return dataclasses.replace(pipe, controlnets=live)


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


def test_export_bakes_a_controlnet_gain_into_the_output_convolutions(tmp_path, cli):
    live = with_live_zero_convs(tiny_pipeline())
    save_pipeline(tmp_path / "live", live)
    code, _, err = cli(
        "export", tmp_path / "live", "--out", tmp_path / "g", "--format", "flax", "--controlnet-gain", "canny=2.5"
    )  # fmt: skip
    assert code == 0, err
    before, after = (
        flatten(live.controlnets["canny"].params),
        flatten(load_pipeline(tmp_path / "g").controlnets["canny"].params),
    )
    outputs = [k for k in before if k[0].startswith(("controlnet_down_blocks_", "controlnet_mid_block"))]
    assert len(outputs) == 2 * (
        len(TINY_CONTROLNET.block_out_channels) * (TINY_CONTROLNET.layers_per_block + 1) + 1
    )
    for key in before:
        expected = np.asarray(before[key]) * (2.5 if key in outputs else 1.0)
        np.testing.assert_allclose(after[key], expected, rtol=1e-6, err_msg=key)
    assert load_pipeline(tmp_path / "g").meta["controlnet_gains"] == {"canny": 2.5}
    # a second gain multiplies into the first, in the weights and in the record
    code, _, err = cli(
        "export", tmp_path / "g", "--out", tmp_path / "g2", "--format", "flax", "--controlnet-gain", "canny=2"
    )
    assert code == 0, err
    again = load_pipeline(tmp_path / "g2")
    assert again.meta["controlnet_gains"] == {"canny": 5.0}
    key = outputs[0]
    np.testing.assert_allclose(
        flatten(again.controlnets["canny"].params)[key], np.asarray(before[key]) * 5.0, rtol=1e-6
    )
    # a ControlNet added under the gained one's name replaces it, and its record: it carries no gain
    from controlsprint.models.pipeline import save_controlnet

    save_controlnet(tmp_path / "fresh", live.controlnets["canny"], "canny", fmt="flax")
    code, _, err = cli(
        "export", tmp_path / "g", "--out", tmp_path / "g3", "--format", "flax",
        "--add-controlnet", f"canny={tmp_path / 'fresh'}",
    )  # fmt: skip
    assert code == 0, err
    replaced = load_pipeline(tmp_path / "g3")
    assert replaced.meta["controlnet_gains"] == {}
    np.testing.assert_allclose(
        flatten(replaced.controlnets["canny"].params)[key], np.asarray(before[key]), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("depth=2", "--controlnet-gain depth=2.0: the pipeline has no ControlNet 'depth' (canny)"),
        ("canny=0", "--controlnet-gain canny=0.0: the gain must be a positive number"),
        ("canny=nan", "--controlnet-gain canny=nan: the gain must be a positive number"),
        ("canny=x", "--controlnet-gain canny=x: 'x' is not a valid value"),
    ],
)
def test_bad_controlnet_gains_are_named(saved, tmp_path, cli, value, message):
    _, folder = saved
    code, _, err = cli("export", folder, "--out", tmp_path / "bad", "--controlnet-gain", value)
    assert code != 0 and not (tmp_path / "bad").exists()
    assert err.strip() == f"controlsprint export: error: {message}"


def test_export_records_the_guidance_scale_every_command_defaults_to(saved, tmp_path, cli):
    from controlsprint.inference.core import InferenceCore
    from controlsprint.models.pipeline import DEFAULT_GUIDANCE, model_guidance

    _, folder = saved
    assert load_pipeline(folder).default_guidance == DEFAULT_GUIDANCE == model_guidance(folder) == 7.5
    code, _, err = cli("export", folder, "--out", tmp_path / "g", "--format", "flax", "--guidance-scale", "3")
    assert code == 0, err
    guided = load_pipeline(tmp_path / "g")
    assert guided.meta["guidance_scale"] == 3.0 and model_guidance(tmp_path / "g") == 3.0
    assert InferenceCore(guided).default_guidance == 3.0
    # kept by a later export of that folder, replaced by a new value
    code, _, err = cli("export", tmp_path / "g", "--out", tmp_path / "g2", "--format", "flax")
    assert code == 0, err
    assert load_pipeline(tmp_path / "g2").default_guidance == 3.0
    code, _, err = cli(
        "export", tmp_path / "g", "--out", tmp_path / "g3", "--format", "flax", "--guidance-scale", "6.5"
    )  # fmt: skip
    assert code == 0, err
    assert load_pipeline(tmp_path / "g3").default_guidance == 6.5


@pytest.mark.parametrize("value", ["-1", "nan", "101"])
def test_bad_guidance_scales_are_named(saved, tmp_path, cli, value):
    _, folder = saved
    code, _, err = cli("export", folder, "--out", tmp_path / "bad", "--guidance-scale", value)
    assert code != 0 and not (tmp_path / "bad").exists()
    assert err.strip() == (
        f"controlsprint export: error: --guidance-scale {float(value)}: must be a number from 0 to 100"
    )


@pytest.mark.parametrize(
    "flag", [("--guidance-scale", "3"), ("--controlnet-gain", "canny=2"), ("--vae", "somewhere")]
)
def test_pipeline_only_flags_refuse_a_controlnet_folder(saved, tmp_path, cli, flag):
    from controlsprint.models.pipeline import save_controlnet

    pipe, _ = saved
    save_controlnet(tmp_path / "cn", pipe.controlnets["canny"], "canny", fmt="flax")
    code, _, err = cli("export", tmp_path / "cn", "--out", tmp_path / "out", *flag)
    assert code != 0 and not (tmp_path / "out").exists()
    assert err.strip() == (
        f"controlsprint export: error: {flag[0]} needs a pipeline folder; {tmp_path / 'cn'} has no model_index.json"
    )
