"""Frozen encodings cached once per dataset row (training/encodings.py): the same training, less work."""

from __future__ import annotations

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from controlsprint.cli.train import load_train_config
from controlsprint.data.reader import ShardedDataset
from controlsprint.training import encodings
from controlsprint.training import sharding as shd
from controlsprint.training.models import initial_params, starting_point, step_context
from controlsprint.training.optim import learning_rates
from controlsprint.training.step import init_state, train_step
from tests.training_helpers import exported_params, make_dataset, max_difference, train_args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny")


def _setup(data, mode: str):
    text_trains = mode == "unet-text"  # the text encoder trains with the UNet: only latents are cached
    cfg = load_train_config(
        "tiny",
        [
            f"data.path={data}",
            f"model.mode={'unet' if text_trains else mode}",
            f"model.train_text_encoder={str(text_trains).lower()}",
            "data.resolution=32",
            "data.caption_dropout=0.5",
        ],
    )
    dataset = ShardedDataset(data)
    start = starting_point(cfg, dataset.read_rows(np.arange(len(dataset)), ["text"])["text"])
    return cfg, dataset, start


@pytest.mark.parametrize("mode", ["controlnet", "unet", "unet-text"])
def test_cached_step_equals_the_step_that_encodes(data, mode):
    """Three optimiser steps from the same state and keys, one encoding the batch itself and one reading
    the dataset cache at those rows: same losses and same parameters (caption dropout at 0.5, so the
    empty prompt's cached states are used too). With the text encoder training, only the latents are
    cached and the step encodes the captions through the weights it is training."""
    cfg, dataset, start = _setup(data, mode)
    ctx, frozen = step_context(cfg, start)
    rates = learning_rates(cfg.optim, cfg.run.steps)
    mesh = shd.make_mesh(cfg.mesh)
    cache = encodings.encode_dataset(ctx, frozen, dataset, cfg, start.pipeline.tokenizer, mesh)
    assert cache.latent_mean.shape[0] == len(dataset)
    assert (cache.text is None) == (mode == "unet-text")
    assert encodings.cached_keys(cfg) == tuple(cache.rows(np.arange(2)))
    raw = next(dataset.batches(4, seed=0, condition="canny", resolution=32))
    plain = {"pixels": raw["pixel_values"], "ids": start.pipeline.tokenizer(raw["text"])}
    cached = cache.rows(raw["rows"])
    if cache.text is None:
        cached["ids"] = plain["ids"]
    if mode == "controlnet":
        plain["cond"] = cached["cond"] = raw["conditioning_pixel_values"]
    runs = {}
    for name, batch, tree in (
        ("plain", plain, frozen),
        ("cached", cached, encodings.step_frozen(frozen, cache.empty_text)),
    ):
        state = init_state(ctx, jax.tree_util.tree_map(np.array, initial_params(cfg, start)), tree)
        step = jax.jit(functools.partial(train_step, ctx))
        losses = []
        for i in range(3):
            state, metrics = step(state, batch, jax.random.key(i), rates[i])
            losses.append(float(metrics["loss"]))
        runs[name] = (losses, state.params)
    np.testing.assert_allclose(runs["cached"][0], runs["plain"][0], rtol=1e-5)
    # Adam moves each weight by about the learning rate (1e-4) per step whatever its gradient's size, so a
    # weight whose gradient is ~0 (a fresh UNet's zero-initialised output layers) takes the sign of the
    # encoders' float rounding, which differs between the two groupings (~1e-7; on an AVX2 CPU that moved
    # a bias by 1.3e-5). Wrong rows or latents would move weights by ~1e-4: the bound sits between.
    for a, b in zip(*(jax.tree_util.tree_leaves(runs[n][1]) for n in runs), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=3e-5)
    assert "vae" not in encodings.step_frozen(frozen, cache.empty_text)


def test_cache_holds_what_the_encoders_give_for_every_row(data):
    cfg, dataset, start = _setup(data, "controlnet")
    cfg = dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, batch_size=5)
    )  # 48 rows: last chunk padded
    ctx, frozen = step_context(cfg, start)
    cache = encodings.encode_dataset(
        ctx, frozen, dataset, cfg, start.pipeline.tokenizer, shd.make_mesh(cfg.mesh)
    )
    rows = np.array([0, 17, len(dataset) - 1])
    pixels, texts = dataset.images_and_texts(rows, resolution=32)
    mean, logvar = start.pipeline.vae.module().apply({"params": frozen["vae"]}, pixels, method="encode")
    text = start.pipeline.text_encoder.module().apply(
        {"params": frozen["text_encoder"]}, start.pipeline.tokenizer(texts)
    )[0]
    np.testing.assert_allclose(cache.latent_mean[rows], mean, atol=1e-5)
    np.testing.assert_allclose(cache.latent_logvar[rows], logvar, atol=1e-5)
    np.testing.assert_allclose(cache.text[rows], text, atol=1e-5)
    empty = start.pipeline.text_encoder.module().apply(
        {"params": frozen["text_encoder"]}, start.pipeline.tokenizer([""])
    )[0][0]
    np.testing.assert_allclose(cache.empty_text, empty, atol=1e-6)


def test_where_the_cache_applies():
    cfg = load_train_config("tiny", [])
    assert encodings.applies(cfg)
    for change in ("data.cache_encodings=false", "data.crop=32", "model.mode=vae", "model.mode=video"):
        assert not encodings.applies(load_train_config("tiny", [change])), change


def test_a_run_with_the_cache_ends_where_a_run_without_it_does(cli, data, tmp_path):
    results = {}
    for cache in ("true", "false"):
        out = tmp_path / cache
        # 13 steps of 4: 52 samples, more than the 48 rows (a shorter run would not cache)
        code, stdout, err = cli(*train_args(data, out, "run.steps=13", f"data.cache_encodings={cache}"))
        assert code == 0, err
        assert ("encoded 48 rows once" in stdout) == (cache == "true")
        results[cache] = (json.loads(stdout.strip().splitlines()[-1])["loss"], exported_params(out))
    assert results["true"][0] == pytest.approx(results["false"][0], rel=1e-5)
    # The cache pass groups rows into other batches than training does, so the encoders' float rounding
    # differs (~1e-7), and Adam's normalised update can carry that up to a few 1e-6; wrong rows or a
    # wrong latent would move weights by the learning rate (1e-4) per step.
    assert max_difference(results["true"][1], results["false"][1]) < 1e-5


def test_a_cache_over_the_memory_limit_falls_back_to_encoding_every_step(cli, data, tmp_path, monkeypatch):
    monkeypatch.setattr(encodings, "MAX_CACHE_BYTES", 1024)
    code, stdout, err = cli(*train_args(data, tmp_path / "run", "run.steps=13"))
    assert code == 0, err
    assert "encoding every step: caching 48 rows would take" in stdout and "encoded 48 rows" not in stdout


def test_a_run_of_at_most_one_epoch_encodes_every_step(cli, data, tmp_path):
    code, stdout, err = cli(*train_args(data, tmp_path / "run", "run.steps=12"))  # 48 samples, 48 rows
    assert code == 0, err
    assert "encoding every step: the run's 48 samples are at most one pass over the 48 rows" in stdout


def test_encodings_on_disk_are_read_by_the_next_run_and_train_the_same(cli, data, tmp_path):
    """data.encodings_dir: the first run encodes and stores, the second reads the file (no pass) and
    ends with bit-identical weights, since the stored arrays are the ones the first run trained on."""
    store = tmp_path / "encodings"
    results = []
    for name in ("first", "second"):
        code, stdout, err = cli(
            *train_args(data, tmp_path / name, "run.steps=13", f"data.encodings_dir={store}")
        )
        assert code == 0, err
        results.append((stdout, exported_params(tmp_path / name)))
    assert "encoded 48 rows once" in results[0][0]
    assert f"read the encodings of 48 rows (VAE latents, captions) from {store}" in results[1][0]
    assert "encoded 48 rows" not in results[1][0]
    assert len(list(store.glob("*.npz"))) == 1
    assert max_difference(results[0][1], results[1][1]) == 0.0


def test_a_run_too_short_for_its_own_pass_reads_a_stored_one(cli, data, tmp_path):
    """At most one epoch (12 steps of 4 = the 48 rows) encodes every step, unless a longer run on the
    same dataset and encoders stored its pass: then it reads that pass and trains as a cached run does."""
    store = tmp_path / "encodings"
    code, stdout, err = cli(
        *train_args(data, tmp_path / "short-alone", "run.steps=12", f"data.encodings_dir={store}")
    )
    assert code == 0, err
    assert "encoding every step: the run's 48 samples" in stdout and not store.exists()
    code, stdout, err = cli(
        *train_args(data, tmp_path / "long", "run.steps=13", f"data.encodings_dir={store}")
    )
    assert code == 0 and "encoded 48 rows once" in stdout, err
    code, stdout, err = cli(
        *train_args(data, tmp_path / "short", "run.steps=12", f"data.encodings_dir={store}")
    )
    assert code == 0, err
    assert f"read the encodings of 48 rows (VAE latents, captions) from {store}" in stdout
    assert "encoding every step" not in stdout
    # the same 12 steps through the encoders each step end within float rounding of the stored pass
    assert (
        max_difference(exported_params(tmp_path / "short"), exported_params(tmp_path / "short-alone")) < 1e-5
    )


def test_the_store_key_follows_the_weights_the_captions_and_the_resolution(data):
    from controlsprint.training import encodings_store

    cfg, dataset, start = _setup(data, "controlnet")
    _, frozen = step_context(cfg, start)
    ids = start.pipeline.tokenizer(dataset.read_rows(np.arange(len(dataset)), ["text"])["text"])
    key = encodings_store.store_key(frozen, dataset, ids, 32)
    assert encodings_store.store_key(frozen, dataset, ids.copy(), 32) == key
    assert encodings_store.store_key(frozen, dataset, ids, 64) != key
    assert encodings_store.store_key(frozen, dataset, np.roll(ids, 1, axis=0), 32) != key
    nudged = jax.tree_util.tree_map(lambda x: x, frozen)
    first = jax.tree_util.tree_leaves(nudged["vae"])[0]
    nudged["vae"] = jax.tree_util.tree_map(lambda x: x + 1e-3 if x is first else x, nudged["vae"])
    assert encodings_store.store_key(nudged, dataset, ids, 32) != key
    without_text = {k: v for k, v in frozen.items() if k != "text_encoder"}
    assert encodings_store.store_key(without_text, dataset, ids, 32) != key


def test_a_damaged_store_file_is_encoded_again_and_replaced(data, tmp_path):
    from controlsprint.training import encodings_store

    cache = encodings.EncodingCache(
        np.ones((3, 2, 2, 4), np.float32), np.zeros((3, 2, 2, 4), np.float32), None, None, 0.0
    )
    (tmp_path / "k.npz").write_bytes(b"not a zip file")
    calls = []

    def encode():
        calls.append(1)
        return cache

    got, stored = encodings_store.load_or_encode(tmp_path, "k", encode)
    assert (stored, len(calls)) == (False, 1)
    again, stored = encodings_store.load_or_encode(tmp_path, "k", encode)
    assert (stored, len(calls)) == (True, 1)
    np.testing.assert_array_equal(again.latent_mean, cache.latent_mean)
    assert again.text is None and again.empty_text is None
    assert not list(tmp_path.glob("*.partial.npz"))
