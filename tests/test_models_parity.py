"""Our Flax models equal diffusers/transformers 0.39/4.57 PyTorch models on the same weights (1e-4).

The weights go through the real loading path: the reference saves a diffusers-layout folder with
safetensors in PyTorch naming, and `load_component` converts it.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from controlsprint.models.configs import TINY_TEXT  # noqa: E402
from controlsprint.models.io import load_component  # noqa: E402
from tests import tiny_models  # noqa: E402
from tests.tiny_models import nchw, nhwc  # noqa: E402
from tests.tiny_models import to_torch as _t  # noqa: E402

TOL = 1e-4
rng = np.random.default_rng(0)
LATENTS = rng.standard_normal((2, 16, 16, 4)).astype(np.float32)
TEXT = rng.standard_normal((2, 7, 32)).astype(np.float32)
COND = rng.random((2, 128, 128, 3)).astype(np.float32)
TIMESTEPS = np.array([10.0, 731.0], dtype=np.float32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    models = {
        "unet": tiny_models.torch_unet(),
        "controlnet": tiny_models.torch_controlnet(),
        "vae": tiny_models.torch_vae(),
        "text_encoder": tiny_models.torch_text_encoder(),
    }
    return {k: (m, tiny_models.save_torch(m, root / k)) for k, m in models.items()}


@pytest.mark.parametrize(("scale", "guess_mode"), [(0.7, False), (1.0, True)])
def test_controlnet_and_unet_match_diffusers(folders, scale, guess_mode):
    (t_unet, unet_dir), (t_cn, cn_dir) = folders["unet"], folders["controlnet"]
    unet, cn = load_component(unet_dir, "unet"), load_component(cn_dir, "controlnet")
    ref, (down, mid) = tiny_models.torch_controlnet_unet(
        t_cn, t_unet, LATENTS, TIMESTEPS, TEXT, COND, scale, guess_mode=guess_mode
    )
    our_down, our_mid = cn.module().apply(
        {"params": cn.params}, LATENTS, TIMESTEPS, TEXT, COND, scale, guess_mode
    )
    assert len(our_down) == len(down)
    for ours, theirs in zip(our_down, down, strict=True):
        np.testing.assert_allclose(np.asarray(ours), nhwc(theirs.numpy()), atol=TOL)
    np.testing.assert_allclose(np.asarray(our_mid), nhwc(mid.numpy()), atol=TOL)
    out = unet.module().apply({"params": unet.params}, LATENTS, TIMESTEPS, TEXT, our_down, our_mid)
    np.testing.assert_allclose(np.asarray(out), ref, atol=TOL)
    assert np.abs(ref).max() > 0.1, "reference output must not be trivially small"


def test_unet_alone_matches_diffusers(folders):
    t_unet, unet_dir = folders["unet"]
    unet = load_component(unet_dir, "unet")
    with torch.no_grad():
        ref = t_unet(_t(nchw(LATENTS)), 500, _t(TEXT)).sample.numpy()
    out = unet.module().apply({"params": unet.params}, LATENTS, 500, TEXT)
    np.testing.assert_allclose(np.asarray(out), nhwc(ref), atol=TOL)


def test_vae_encode_decode_match_diffusers(folders):
    t_vae, vae_dir = folders["vae"]
    vae = load_component(vae_dir, "vae")
    pixels = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
        dist = t_vae.encode(_t(nchw(pixels))).latent_dist
        decoded = t_vae.decode(dist.mean).sample.numpy()
    module = vae.module()
    mean, logvar = module.apply({"params": vae.params}, pixels, method=module.encode)
    np.testing.assert_allclose(np.asarray(mean), nhwc(dist.mean.numpy()), atol=TOL)
    np.testing.assert_allclose(np.asarray(logvar), nhwc(dist.logvar.numpy()), atol=TOL)
    out = module.apply({"params": vae.params}, mean, method=module.decode)
    np.testing.assert_allclose(np.asarray(out), nhwc(decoded), atol=TOL)


def test_text_encoder_matches_transformers(folders):
    t_te, te_dir = folders["text_encoder"]
    te = load_component(te_dir, "text_encoder")
    ids = rng.integers(0, TINY_TEXT.vocab_size - 2, (2, 77))
    ids[:, 0] = TINY_TEXT.bos_token_id
    ids[0, 6:] = TINY_TEXT.eos_token_id
    ids[1, 20:] = TINY_TEXT.eos_token_id
    with torch.no_grad():
        ref = t_te(torch.from_numpy(ids))
    hidden, pooled = te.module().apply({"params": te.params}, ids)
    np.testing.assert_allclose(np.asarray(hidden), ref.last_hidden_state.numpy(), atol=TOL)
    np.testing.assert_allclose(np.asarray(pooled), ref.pooler_output.numpy(), atol=TOL)
