"""The shared inference core: parity with diffusers 0.39's Flax ControlNet pipeline, determinism,
control scales and schedules, inpainting, img2img, progress, bad requests."""

from __future__ import annotations

import numpy as np
import pytest

from controlsprint.errors import UserError
from controlsprint.inference import Control, InferenceCore, make_request
from controlsprint.inference.program import _control_keep
from controlsprint.models.pipeline import save_pipeline
from tests.test_pipeline_folder import tiny_pipeline, with_live_zero_convs

STEPS = 4
rng = np.random.default_rng(7)
CONDITION = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
OTHER_CONDITION = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
PHOTO = (rng.random((128, 128, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    pipeline = tiny_pipeline()
    # a second ControlNet (same weights suffice: what matters is that both run and sum)
    return pipeline.with_controlnets({"seg": pipeline.controlnets["canny"]})


@pytest.fixture(scope="module")
def core(pipe):
    return InferenceCore(with_live_zero_convs(pipe))


def request(**overrides):
    fields = {
        "prompt": "red circle",
        "steps": STEPS,
        "seed": 3,
        "controls": [Control("canny", CONDITION, 0.8)],
    }
    return make_request(**{**fields, **overrides})


def _diffusers_flax(cls, folder):
    """A diffusers Flax model with weights converted by diffusers' own converter (an independent path)."""
    from diffusers.models.modeling_flax_pytorch_utils import convert_pytorch_state_dict_to_flax
    from safetensors.torch import load_file

    model = cls.from_config(cls.load_config(folder))
    model = model[0] if isinstance(model, tuple) else model
    params = convert_pytorch_state_dict_to_flax(
        load_file(folder / "diffusion_pytorch_model.safetensors"), model
    )
    return model, params


def test_matches_diffusers_flax_controlnet_pipeline(core, tmp_path):
    pytest.importorskip("torch")
    import jax.numpy as jnp
    from diffusers import (
        FlaxAutoencoderKL,
        FlaxControlNetModel,
        FlaxDDIMScheduler,
        FlaxStableDiffusionControlNetPipeline,
        FlaxUNet2DConditionModel,
    )
    from transformers import CLIPTokenizer, FlaxCLIPTextModel

    from controlsprint.models.export import export

    save_pipeline(tmp_path / "ours", core.pipeline)
    pt = export(tmp_path / "ours", tmp_path / "pt", fmt="pytorch")
    unet, unet_params = _diffusers_flax(FlaxUNet2DConditionModel, pt / "unet")
    vae, vae_params = _diffusers_flax(FlaxAutoencoderKL, pt / "vae")
    cn, cn_params = _diffusers_flax(FlaxControlNetModel, pt / "controlnets" / "canny")
    text_encoder = FlaxCLIPTextModel.from_pretrained(pt / "text_encoder", from_pt=True)
    scheduler, scheduler_state = FlaxDDIMScheduler.from_pretrained(pt / "scheduler")
    pipeline = FlaxStableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(pt / "tokenizer"),
        unet=unet,
        controlnet=cn,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
    )
    params = {
        "unet": unet_params,
        "vae": vae_params,
        "controlnet": cn_params,
        "text_encoder": text_encoder.params,
        "scheduler": scheduler_state,
    }
    latents = rng.standard_normal((1, 16, 16, 4)).astype(np.float32)
    ours = core.generate(request(latents=latents, guidance=7.5))
    ids = core.pipeline.tokenizer(["red circle"])
    negative = core.pipeline.tokenizer([""])
    theirs = pipeline(
        jnp.asarray(ids),
        jnp.asarray(CONDITION.astype(np.float32)[None].transpose(0, 3, 1, 2) / 255.0),
        params,
        None,
        num_inference_steps=STEPS,
        guidance_scale=7.5,
        latents=jnp.asarray(latents.transpose(0, 3, 1, 2)),
        neg_prompt_ids=jnp.asarray(negative),
        controlnet_conditioning_scale=0.8,
    ).images
    theirs = np.round(np.asarray(theirs) * 255).astype(np.int16)
    diff = np.abs(ours.astype(np.int16) - theirs)
    assert diff.max() <= 1, f"max difference {diff.max()} uint8 levels"
    assert ours.std() > 5, "the image must not be flat"


def test_same_seed_same_bytes_other_seed_differs(core):
    a, b = core.generate(request()), core.generate(request())
    assert a.shape == (1, 128, 128, 3) and a.dtype == np.uint8
    assert a.tobytes() == b.tobytes()
    assert core.generate(request(seed=4)).tobytes() != a.tobytes()


def test_first_image_of_a_batch_equals_it_alone(core):
    batch = core.generate(request(num_images=2))
    alone = core.generate(request(num_images=1))
    # Same noise for image 0 either way; batched convolutions may round differently, by a level at most.
    assert batch.shape[0] == 2 and np.abs(batch[0].astype(int) - alone[0]).max() <= 1
    assert np.abs(batch[0].astype(int) - batch[1]).mean() > 5


def test_zero_scale_equals_the_base_model(core):
    off = core.generate(request(controls=[Control("canny", CONDITION, 0.0)]))
    base = core.generate(request(controls=[]))
    on = core.generate(request())
    assert np.array_equal(off, base)
    assert np.abs(on.astype(int) - base).mean() > 1.0, "control must change the image"


def test_second_control_at_scale_zero_equals_single_control(core):
    single = core.generate(request())
    double = core.generate(
        request(controls=[Control("canny", CONDITION, 0.8), Control("seg", OTHER_CONDITION, 0.0)])
    )
    both = core.generate(
        request(controls=[Control("canny", CONDITION, 0.8), Control("seg", OTHER_CONDITION, 0.8)])
    )
    # A different program (two ControlNets) may fuse differently: equal up to rounding, a level at most.
    assert np.abs(single.astype(int) - double).max() <= 1
    assert np.abs(single.astype(int) - both).mean() > 1.0


def test_control_schedule_fractions():
    import jax.numpy as jnp

    from controlsprint.schedulers import make_scheduler

    sched = make_scheduler("ddim", None, 10)
    keep = [
        float(_control_keep(sched, i, jnp.int32(0), jnp.float32(0.2), jnp.float32(0.6))) for i in range(10)
    ]
    assert keep == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0]  # diffusers: keep if i/n >= start and (i+1)/n <= end
    keep = [
        float(_control_keep(sched, i, jnp.int32(5), jnp.float32(0.0), jnp.float32(0.4))) for i in range(5, 10)
    ]
    assert keep == [1, 1, 0, 0, 0]  # fractions of the steps actually run (img2img from step 5)


def test_end_fraction_changes_the_result(core):
    full = core.generate(request())
    early = core.generate(request(controls=[Control("canny", CONDITION, 0.8, 0.0, 0.5)]))
    assert not np.array_equal(full, early)


def test_inpaint_keeps_unmasked_pixels(core):
    mask = np.zeros((128, 128), np.uint8)
    mask[32:96, 40:100] = 255
    out = core.generate(request(init_image=PHOTO, mask=mask, strength=1.0))[0]
    keep = mask == 0
    assert np.array_equal(out[keep], PHOTO[keep])
    assert np.abs(out[~keep].astype(int) - PHOTO[~keep]).mean() > 5


def test_img2img_at_low_strength_stays_at_the_init_image(core):
    # With an untrained VAE the init image "as the model sees it" is its VAE reconstruction.
    vae = core.pipeline.vae
    module = vae.module()
    pixels = PHOTO[None].astype(np.float32) / 127.5 - 1.0
    mean, _ = module.apply({"params": vae.params}, pixels, method=module.encode)
    recon = np.asarray(module.apply({"params": vae.params}, mean, method=module.decode))[0]
    recon = np.round(np.clip(recon / 2 + 0.5, 0, 1) * 255).astype(int)
    low = core.generate(request(init_image=PHOTO, strength=0.25, controls=[], guidance=1.0))[0].astype(int)
    high = core.generate(request(init_image=PHOTO, strength=1.0, controls=[], guidance=1.0))[0].astype(int)
    # An untrained UNet's one last step still moves it, but far less than a run from pure noise.
    assert np.abs(high - recon).mean() > 2 * np.abs(low - recon).mean()


def test_progress_reports_every_step(core):
    seen = []
    core.generate(request(), progress=lambda done, total: seen.append((done, total)))
    assert sorted(seen) == [(i, STEPS) for i in range(1, STEPS + 1)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"controls": [Control("depth", CONDITION)]}, "no ControlNet named 'depth'"),
        ({"steps": 0}, "steps=0"),
        ({"init_image": PHOTO, "mask": np.zeros((64, 64), np.uint8)}, "mask size 64x64 does not match"),
        ({"mask": np.zeros((128, 128), np.uint8)}, "a mask needs an init image"),
        ({"strength": 1.5, "init_image": PHOTO}, "strength=1.5"),
        ({"scheduler": "pndm"}, "scheduler 'pndm'"),
        ({"controls": [Control("canny", CONDITION, 0.5, 0.7, 0.2)]}, "start 0.7 must be below end 0.2"),
    ],
)
def test_bad_requests_are_user_errors(core, overrides, message):
    with pytest.raises(UserError, match=message):
        core.generate(request(**overrides))


def test_a_gain_in_the_weights_equals_the_conditioning_scale(pipe, core):
    from controlsprint.models.export import with_controlnet_gains

    gained = InferenceCore(with_controlnet_gains(with_live_zero_convs(pipe), {"canny": 2.5}))
    at_scale_2 = core.generate(request(controls=[Control("canny", CONDITION, 2.0)]))
    gain_times_scale = gained.generate(request(controls=[Control("canny", CONDITION, 0.8)]))  # 2.5 x 0.8
    assert np.abs(at_scale_2.astype(int) - gain_times_scale).max() <= 1  # rounding, a level at most
    at_scale_08 = core.generate(request())
    assert np.abs(at_scale_08.astype(int) - gain_times_scale).mean() > 1.0, "the gain must change the image"
