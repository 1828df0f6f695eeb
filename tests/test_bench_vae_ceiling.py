"""bench/vae_ceiling.py: the embedded VAE's round trip scores high on eval's metrics, every figure is
reported against the first VAE's, and a damaged decoder scores lower."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from controlsprint.models.default import EMBEDDED_MODEL_DIR
from controlsprint.models.io import load_component, save_component
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
vae_ceiling = pytest.importorskip("vae_ceiling")


def _blurred_decoder(tmp_path):
    """The embedded VAE with its decoder's last convolution averaged over its 3x3 window: the same
    latents decode to a smoother picture, so edges (canny) must score lower."""
    vae = load_component(EMBEDDED_MODEL_DIR / "vae", "vae")
    params = {k: v for k, v in vae.params.items()}
    decoder = dict(params["decoder"])
    conv_out = dict(decoder["conv_out"])
    kernel = np.asarray(conv_out["kernel"])
    conv_out["kernel"] = np.broadcast_to(kernel.mean(axis=(0, 1), keepdims=True), kernel.shape).copy()
    decoder["conv_out"] = conv_out
    params["decoder"] = decoder
    return save_component(tmp_path / "blurred-vae", vae.config, params)


def test_round_trip_ceilings_against_the_first_vae(tmp_path, monkeypatch, capsys):
    blurred = _blurred_decoder(tmp_path)
    folders = [str(EMBEDDED_MODEL_DIR), str(EMBEDDED_MODEL_DIR / "vae"), str(blurred)]
    monkeypatch.setattr(sys, "argv", ["vae_ceiling.py", *folders, "--num", "3"])
    vae_ceiling.main()
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    shipped, same, worse = (record["ceilings"][f] for f in folders)
    assert record["reference"] == folders[0] and record["num"] == 3
    # a pipeline folder and its vae/ folder are the same VAE: identical figures, ratios 1.00
    assert same == shipped
    assert lines[1].count("(1.00x)") == 4
    # the true pictures survive the trip: far above what a generated picture needs for the goals
    assert shipped["canny"] > 0.6 and shipped["segment"] > 0.8 and shipped["gray"] > 25
    assert worse["canny"] < shipped["canny"] - 0.1


def test_a_folder_that_is_no_vae_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vae_ceiling.py", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        vae_ceiling.main()
    assert (
        str(exit_info.value)
        == f"vae_ceiling: {tmp_path}: neither a pipeline folder (model_index.json) nor a vae folder (config.json)"
    )
