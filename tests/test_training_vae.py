"""VAE training: the whole autoencoder from scratch, and the decoder alone on a frozen encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from controlsprint.models.pipeline import load_pipeline
from tests.training_helpers import exported_params, make_dataset, train_args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny", rows=16)


@pytest.fixture(scope="module")
def whole(data, tmp_path_factory):
    """A VAE trained whole for two steps: the base the decoder fine-tune starts from."""
    from controlsprint.cli.main import main

    out = tmp_path_factory.mktemp("vae") / "whole"
    assert main(train_args(data, out, "model.mode=vae", "run.steps=2", "optim.learning_rate=1e-3")) == 0
    return out


def test_decoder_fine_tune_keeps_the_encoder_and_its_latent_scaling(cli, data, whole, tmp_path):
    out = tmp_path / "decoder"
    base = whole / "export" / "pipeline"
    code, stdout, err = cli(
        *train_args(
            data,
            out,
            "model.mode=vae",
            "model.vae_part=decoder",
            f"model.base={base}",
            "run.steps=3",
            "optim.learning_rate=1e-3",
            "optim.weight_decay=0.1",  # a decayed encoder would move even with a zero gradient
        )
    )
    assert code == 0, err
    assert np.isfinite(json.loads(stdout.strip().splitlines()[-1])["loss"])
    before, after = exported_params(whole, "vae"), exported_params(out, "vae")
    assert before.keys() == after.keys()
    encoder = [k for k in before if k[0] in ("encoder", "quant_conv")]
    decoder = [k for k in before if k[0] in ("decoder", "post_quant_conv")]
    assert encoder and decoder and len(encoder) + len(decoder) == len(before)
    for key in encoder:
        assert np.array_equal(before[key], after[key]), key
    moved = [key for key in decoder if not np.array_equal(before[key], after[key])]
    assert len(moved) == len(decoder), sorted(set(decoder) - set(moved))
    # the latents are the base's, so their scaling factor is too (a whole run measures its own)
    scale = lambda run: load_pipeline(run / "export" / "pipeline").vae.config.scaling_factor  # noqa: E731
    assert scale(out) == scale(whole)
    # the rest of the pipeline (UNet, text encoder) comes through from the base unchanged
    assert all(
        np.array_equal(v, exported_params(out, "unet")[k]) for k, v in exported_params(whole, "unet").items()
    )


@pytest.mark.parametrize(
    "extra", [["model.mode=vae", "model.vae_part=decoder"], ["model.mode=unet", "model.vae_part=decoder"]]
)
def test_decoder_fine_tune_needs_a_base_vae(cli, data, tmp_path, extra):
    code, _, err = cli(*train_args(data, tmp_path / "bad", *extra))
    assert code == 2 and err.count("\n") == 1 and "model.vae_part" in err, err
