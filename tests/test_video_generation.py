"""Video requests in the shared inference core: the video UNet at init is the image model frame by frame,
determinism, the hint input and first-frame lock, bad requests, and the temporal/ part of pipeline folders.

Tiny sizes throughout (the tiny pipeline at 64 px, 3-frame clips, 2 sampler steps): the sampling programs
compile once per structure and every test after the first reuses them.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from controlsprint.errors import UserError
from controlsprint.inference import Control, InferenceCore, make_request
from controlsprint.models.convert import flatten
from controlsprint.models.io import FLAX_WEIGHTS, Component
from controlsprint.models.pipeline import load_pipeline, save_pipeline
from controlsprint.models.video_configs import TINY_VIDEO_UNET
from tests.test_pipeline_folder import tiny_pipeline

FRAMES, SIZE, STEPS = 3, 64, 2
LATENT = SIZE // 8  # the tiny VAE downsamples by 8


def _picture(colour: tuple[int, int, int], corner: tuple[int, int]) -> np.ndarray:
    """A smooth hint image: a horizontal gradient with a flat square of `colour` at `corner`."""
    ramp = np.linspace(40, 210, SIZE, dtype=np.float32)
    image = np.stack([np.broadcast_to(ramp, (SIZE, SIZE))] * 3, axis=-1).astype(np.uint8).copy()
    y, x = corner
    image[y : y + 24, x : x + 24] = colour
    return image


HINT = _picture((220, 30, 30), (8, 8))
OTHER_HINT = _picture((30, 60, 230), (32, 36))


def video_pipeline(*, live: bool = False):
    """The tiny pipeline with temporal layers inflated from its UNet. At init the temporal output
    projections and the hint conv are zero; `live` perturbs every temporal weight so that they act."""
    from controlsprint.models.video_io import temporal_params
    from controlsprint.models.video_unet import inflate

    pipe = tiny_pipeline()
    params = jax.device_get(temporal_params(inflate(pipe.unet.params, TINY_VIDEO_UNET, jax.random.key(0))))
    if live:
        noise = np.random.default_rng(5)
        params = jax.tree.map(
            lambda a: np.asarray(a) + 0.05 * noise.standard_normal(a.shape).astype(np.float32), params
        )
    return dataclasses.replace(pipe, temporal=Component("temporal", TINY_VIDEO_UNET, params))


@pytest.fixture(scope="module")
def pipe():
    return video_pipeline()


@pytest.fixture(scope="module")
def core(pipe):
    return InferenceCore(pipe)


@pytest.fixture(scope="module")
def live_pipe():
    return video_pipeline(live=True)


@pytest.fixture(scope="module")
def live_core(live_pipe):
    return InferenceCore(live_pipe)


def clip_request(**overrides):
    fields = {"prompt": "a red square moving right", "frames": FRAMES, "steps": STEPS, "seed": 4}
    fields.update(height=SIZE, width=SIZE)
    return make_request(**{**fields, **overrides})


def _levels(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _vae_round_trip(pipe, image: np.ndarray) -> np.ndarray:
    """`image` encoded to its mean latent and decoded by the pipeline's VAE, as uint8 (no sampling)."""
    vae, params = pipe.vae.module(), pipe.vae.params

    @jax.jit
    def round_trip(pixels):
        mean, _ = vae.apply({"params": params}, pixels, method="encode")
        return vae.apply({"params": params}, mean, method="decode")

    decoded = np.asarray(round_trip(image[None].astype(np.float32) / 127.5 - 1.0))[0]
    return np.round(np.clip(decoded / 2.0 + 0.5, 0.0, 1.0) * 255.0).astype(np.uint8)


@pytest.fixture(scope="module")
def plain_clip(core):
    """A clip from the prompt alone (no hint), seed 4."""
    return core.generate(clip_request())[0]


@pytest.fixture(scope="module")
def hinted_clip(core):
    """The same seed with HINT and the first frame locked on it."""
    return core.generate(clip_request(hint_image=HINT))[0]


# -- the video model at init is the image model frame by frame ----------------------------------------


def test_clip_at_init_equals_the_image_model_frame_by_frame(core):
    latents = np.random.default_rng(0).standard_normal((1, FRAMES, LATENT, LATENT, 4)).astype(np.float32)
    clip = core.generate(clip_request(latents=latents))
    assert clip.shape == (1, FRAMES, SIZE, SIZE, 3) and clip.dtype == np.uint8
    for f in range(FRAMES):
        image = core.generate(
            make_request(
                "a red square moving right", latents=latents[:, f], steps=STEPS, height=SIZE, width=SIZE
            )
        )
        assert image.shape == (1, SIZE, SIZE, 3)
        assert _levels(clip[0, f], image[0]).max() <= 1, f"frame {f}"
    # the frames come from different latents, so the check above compared different pictures
    assert _levels(clip[0, 0], clip[0, 1]).mean() > 5


def test_same_seed_same_clip_other_seed_differs(core, hinted_clip):
    again = core.generate(clip_request(hint_image=HINT))[0]
    assert again.tobytes() == hinted_clip.tobytes()
    other = core.generate(clip_request(hint_image=HINT, seed=5))[0]
    # frame 0 is the hint either way; the free frames follow the seed
    assert _levels(other[1:], hinted_clip[1:]).mean() > 5


def test_hint_strength_that_leaves_no_step_is_a_user_error(core):
    with pytest.raises(UserError, match="strength=0.1: with 2 steps that leaves no denoising step"):
        core.generate(clip_request(hint_image=HINT, hint_strength=0.1))


def test_hint_strength_at_init_is_img2img_of_the_hint_frame_by_frame(core):
    """Below 1, each free frame starts from the noised hint: at init, the image model's img2img of the hint."""
    steps = 4  # strength 0.5 of 4 steps runs the last 2
    latents = np.random.default_rng(1).standard_normal((1, FRAMES, LATENT, LATENT, 4)).astype(np.float32)
    clip = core.generate(
        clip_request(hint_image=HINT, hint_strength=0.5, lock_first_frame=False, latents=latents, steps=steps)
    )[0]
    for f in range(FRAMES):
        image = core.generate(
            make_request(
                "a red square moving right",
                init_image=HINT,
                strength=0.5,
                latents=latents[:, f],
                steps=steps,
                height=SIZE,
                width=SIZE,
            )
        )[0]
        assert _levels(clip[f], image).max() <= 1, f"frame {f}"
    # the hint is where every frame started: without it the same latents give other frames
    plain = core.generate(clip_request(latents=latents, steps=steps))[0]
    assert _levels(clip, plain).mean() > 5


# -- the hint and the first-frame lock ---------------------------------------------------------------


def test_locked_first_frame_is_the_hints_vae_round_trip(pipe, hinted_clip, plain_clip):
    expected = _vae_round_trip(pipe, HINT)
    assert _levels(hinted_clip[0], expected).max() <= 2
    assert _levels(hinted_clip[0], expected).mean() < 0.1
    # without the hint the same seed's first frame is something else entirely
    assert _levels(plain_clip[0], expected).mean() > 20


def test_at_init_the_hint_touches_only_the_locked_frame(hinted_clip, plain_clip):
    """Zero temporal layers and a zero hint conv: frames 1.. cannot see frame 0 or the hint yet."""
    assert _levels(hinted_clip[1:], plain_clip[1:]).max() <= 1


def test_lock_off_leaves_the_first_frame_free(core, plain_clip):
    # At init the hint input is zero, so with the lock off the hint changes nothing at all.
    free = core.generate(clip_request(hint_image=HINT, lock_first_frame=False))[0]
    assert _levels(free, plain_clip).max() <= 1


def test_live_temporal_layers_carry_the_hint_into_later_frames(live_pipe, live_core):
    with_hint = live_core.generate(clip_request(hint_image=HINT))[0]
    with_other = live_core.generate(clip_request(hint_image=OTHER_HINT))[0]
    assert _levels(with_hint[1:], with_other[1:]).mean() > 2
    # the lock holds frame 0 on the hint whatever the temporal layers do
    assert _levels(with_hint[0], _vae_round_trip(live_pipe, HINT)).max() <= 2
    # ... and the hint input carries it too: frame 0 is free here, the seed is the same
    free = live_core.generate(clip_request(hint_image=HINT, lock_first_frame=False))[0]
    free_other = live_core.generate(clip_request(hint_image=OTHER_HINT, lock_first_frame=False))[0]
    assert _levels(free[1:], free_other[1:]).mean() > 2


def test_live_frames_interact(live_core, plain_clip):
    """With live temporal layers the clip is no longer the init clip (same seed, no hint)."""
    live = live_core.generate(clip_request())[0]
    assert _levels(live, plain_clip).mean() > 5


# -- bad requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"controls": [Control("canny", HINT)]}, "ControlNets and init images are image-only"),
        ({"init_image": HINT}, "ControlNets and init images are image-only"),
        ({"frames": 0, "hint_image": HINT}, "a hint image is for video"),
        ({"frames": 65}, "frames=65"),
        ({"frames": -1}, "frames=-1"),
        ({"frames": 2.0}, "frames=2.0"),
        ({"hint_image": HINT[..., 0]}, "hint image: expected an HxWx3 uint8 image"),
        ({"hint_image": HINT.astype(np.float32)}, "hint image: expected an HxWx3 uint8 image"),
    ],
)
def test_bad_video_requests_are_user_errors(fields, message):
    with pytest.raises(UserError, match=message):
        clip_request(**fields)


def test_video_on_a_model_without_temporal_layers(pipe):
    image_only = InferenceCore(dataclasses.replace(pipe, temporal=None))
    assert not image_only.has_video
    with pytest.raises(UserError, match="no temporal layers"):
        image_only.generate(clip_request())


def test_latents_of_the_wrong_clip_shape(core):
    latents = np.zeros((1, FRAMES + 1, LATENT, LATENT, 4), np.float32)
    with pytest.raises(UserError, match="latents shape"):
        core.generate(clip_request(latents=latents))


# -- temporal/ in pipeline folders --------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(live_pipe, tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("video") / "pipe", live_pipe)


def _same_tree(a: dict, b: dict) -> bool:
    fa, fb = flatten(a), flatten(b)
    return fa.keys() == fb.keys() and all(np.array_equal(np.asarray(fa[k]), np.asarray(fb[k])) for k in fa)


def test_temporal_part_round_trips_and_generates_the_same_clip(saved, live_pipe, live_core):
    assert (saved / "temporal" / "config.json").is_file() and (saved / "temporal" / FLAX_WEIGHTS).is_file()
    loaded = load_pipeline(saved)
    assert loaded.temporal is not None and loaded.temporal.kind == "temporal"
    assert loaded.temporal.config == live_pipe.temporal.config
    assert _same_tree(loaded.temporal.params, live_pipe.temporal.params)
    request = clip_request(hint_image=HINT)
    assert InferenceCore(loaded).generate(request).tobytes() == live_core.generate(request).tobytes()


def test_a_folder_without_temporal_loads_as_an_image_model(saved, tmp_path):
    import shutil

    copy = shutil.copytree(saved, tmp_path / "image-only")
    shutil.rmtree(copy / "temporal")
    assert load_pipeline(copy).temporal is None


def _broken_copy(saved, tmp_path):
    import shutil

    return shutil.copytree(saved, tmp_path / "broken")


def test_wrong_weight_shape_names_the_file_and_the_weight(saved, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _broken_copy(saved, tmp_path)
    weights = folder / "temporal" / FLAX_WEIGHTS
    tensors = load_file(str(weights))
    key = sorted(tensors)[0]
    tensors[key] = np.zeros((*tensors[key].shape[:-1], tensors[key].shape[-1] + 1), np.float32)
    save_file(tensors, str(weights), metadata={"format": "flax"})
    with pytest.raises(UserError, match=rf"{FLAX_WEIGHTS}: weight {key} has shape") as caught:
        load_pipeline(folder)
    assert str(weights) in str(caught.value)


def test_missing_weight_names_the_file(saved, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = _broken_copy(saved, tmp_path)
    weights = folder / "temporal" / FLAX_WEIGHTS
    tensors = load_file(str(weights))
    missing = sorted(tensors)[-1]
    del tensors[missing]
    save_file(tensors, str(weights), metadata={"format": "flax"})
    with pytest.raises(UserError, match=rf"weight {missing} has shape None"):
        load_pipeline(folder)


def test_wrong_class_name_names_the_config(saved, tmp_path):
    folder = _broken_copy(saved, tmp_path)
    config = folder / "temporal" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(UserError, match="not a temporal-layers config") as caught:
        load_pipeline(folder)
    assert str(config) in str(caught.value)


def test_temporal_config_that_does_not_fit_the_unet(saved, tmp_path):
    folder = _broken_copy(saved, tmp_path)
    config = folder / "temporal" / "config.json"
    data = json.loads(config.read_text())
    config.write_text(json.dumps({**data, "temporal_attention_heads": 3}))  # 3 divides no block width
    with pytest.raises(UserError, match="temporal_attention_heads=3"):
        load_pipeline(folder)


def test_fp16_storage_round_trip(live_pipe, tmp_path):
    from safetensors import safe_open

    folder = save_pipeline(tmp_path / "half", live_pipe, storage_dtype="float16")
    with safe_open(str(folder / "temporal" / FLAX_WEIGHTS), framework="numpy") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {np.dtype(np.float16)}  # noqa: SIM118
    loaded = flatten(load_pipeline(folder).temporal.params)
    original = flatten(live_pipe.temporal.params)
    assert loaded.keys() == original.keys()
    for key, value in original.items():
        value = np.asarray(value)
        assert loaded[key].dtype == np.float32
        # exactly the float16 rounding of each weight, which is within float16's relative precision
        assert np.array_equal(loaded[key], value.astype(np.float16).astype(np.float32)), key
        np.testing.assert_allclose(loaded[key], value, rtol=1e-3, atol=1e-6)
