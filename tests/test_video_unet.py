"""The pseudo-3D video UNet: inflation invariant, frames interacting once trained, shapes, determinism.

Tiny configs (TINY_UNET spatial model, 8x8 latents, 3-frame clips, batch 2) so the file runs in well
under a minute; the programs are jitted once per input structure and reused across tests.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from controlsprint.errors import UserError
from controlsprint.models.components import abstract_params
from controlsprint.models.configs import TINY_CONTROLNET
from controlsprint.models.controlnet import ControlNetModel
from controlsprint.models.convert import flatten
from controlsprint.models.unet import UNet2DConditionModel
from controlsprint.models.video_configs import TINY_VIDEO_UNET
from controlsprint.models.video_unet import VideoUNet, inflate, widened_conv_in

HINTED = TINY_VIDEO_UNET
PLAIN = dataclasses.replace(TINY_VIDEO_UNET, hint_concat=False)
B, F, SIZE = 2, 3, 8
TOL = 1e-5

rng = np.random.default_rng(0)
LATENTS = rng.standard_normal((B, F, SIZE, SIZE, 4)).astype(np.float32)
TEXT = rng.standard_normal((B, 5, 32)).astype(np.float32)
TIMESTEPS = np.array([10.0, 731.0], dtype=np.float32)
HINT = rng.standard_normal((B, SIZE, SIZE, 4)).astype(np.float32)
# Condition pixels for the tiny ControlNet (three stride-2 steps: 8x the latent size), one per frame.
CONDITION = rng.random((B * F, SIZE * 8, SIZE * 8, 3)).astype(np.float32)


def _random_params(config, seed: int) -> dict:
    """Arbitrary weights of the right shapes (the invariant must hold for any image checkpoint), drawn
    in numpy from the parameter shapes: no init program to compile. Kernels ~ N(0, 1/fan_in), so the
    activations keep their scale; norm scales near 1, biases small."""
    noise = np.random.default_rng(seed)

    def draw(path, shape_dtype):
        shape, name = shape_dtype.shape, path[-1].key
        if name == "scale":
            return (1.0 + 0.1 * noise.standard_normal(shape)).astype(np.float32)
        std = 0.05 if name == "bias" else 1.0 / np.sqrt(np.prod(shape[:-1]))
        return (std * noise.standard_normal(shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, abstract_params(config))


@pytest.fixture(scope="module")
def image_params():
    return _random_params(HINTED.unet, seed=10)


@pytest.fixture(scope="module")
def video_params(image_params):
    return inflate(image_params, HINTED, jax.random.key(1))


def _without_hint(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "hint_conv_in"}


@functools.cache
def _video(config):
    module = VideoUNet(config)

    def run(params, sample, timesteps, text, down=None, mid=None, hint=None):
        return module.apply({"params": params}, sample, timesteps, text, down, mid, hint)

    return jax.jit(run)


@functools.cache
def _image():
    module = UNet2DConditionModel(HINTED.unet)
    return jax.jit(lambda p, x, t, text, down, mid: module.apply({"params": p}, x, t, text, down, mid))


def _image_frame_by_frame(params, sample, down=None, mid=None):
    """The image UNet on each frame on its own; residuals [B, F, ...] sliced to that frame."""
    if down is None:  # zero residuals: one compiled reference program serves every test
        down, mid = _zero_residuals()
    outs = [
        _image()(params, sample[:, f], TIMESTEPS, TEXT, [r[:, f] for r in down], mid[:, f])
        for f in range(sample.shape[1])
    ]
    return np.stack([np.asarray(o) for o in outs], axis=1)


def _perturbed(tree: dict, scale: float, seed: int) -> dict:
    noise = np.random.default_rng(seed)
    return jax.tree.map(lambda a: a + scale * noise.standard_normal(a.shape).astype(np.float32), tree)


@functools.cache
def _controlnet_residuals():
    """Per-frame residuals [B, F, ...] from the project's tiny ControlNet (random weights, so its zero convs
    are not zero), run on the frames folded into the batch."""
    params = _random_params(TINY_CONTROLNET, seed=11)
    per_frame = lambda a: np.repeat(a, F, axis=0)  # noqa: E731 - clip-level inputs, one copy per frame
    down, mid = jax.jit(ControlNetModel(TINY_CONTROLNET).apply)(
        {"params": params},
        LATENTS.reshape(B * F, SIZE, SIZE, 4),
        per_frame(TIMESTEPS),
        per_frame(TEXT),
        CONDITION,
    )
    unfold = lambda a: np.asarray(a).reshape(B, F, *a.shape[1:])  # noqa: E731
    return [unfold(d) for d in down], unfold(mid)


def _zero_residuals():
    down, mid = _controlnet_residuals()
    return [np.zeros_like(d) for d in down], np.zeros_like(mid)


def test_inflated_video_unet_equals_image_unet_frame_by_frame(video_params, image_params):
    out = np.asarray(_video(PLAIN)(_without_hint(video_params), LATENTS, TIMESTEPS, TEXT))
    ref = _image_frame_by_frame(image_params, LATENTS)
    assert out.shape == (B, F, SIZE, SIZE, 4)
    assert np.abs(ref).max() > 0.1, "reference output must not be trivially small"
    np.testing.assert_allclose(out, ref, atol=TOL, rtol=0)


def test_invariant_holds_with_hint_and_per_frame_controlnet_residuals(video_params, image_params):
    down, mid = _controlnet_residuals()
    assert all(np.abs(r).max() > 1e-3 for r in (*down, mid)), "residuals must steer the model"
    out = np.asarray(_video(HINTED)(video_params, LATENTS, TIMESTEPS, TEXT, down, mid, HINT))
    ref = _image_frame_by_frame(image_params, LATENTS, down, mid)
    unsteered = _image_frame_by_frame(image_params, LATENTS)
    assert np.abs(ref - unsteered).max() > 1e-2, "the residuals must change the reference"
    np.testing.assert_allclose(out, ref, atol=TOL, rtol=0)


def test_trained_temporal_layers_make_frames_interact(video_params, image_params):
    params = _without_hint(video_params)
    params = {**params, "temporal": _perturbed(params["temporal"], 0.1, seed=2)}
    changed = LATENTS.copy()
    changed[:, 2] = rng.standard_normal(changed[:, 2].shape)
    video = _video(PLAIN)
    out, out_changed = (np.asarray(video(params, x, TIMESTEPS, TEXT)) for x in (LATENTS, changed))
    assert np.abs(out[:, 0] - out_changed[:, 0]).max() > 1e-3, "frame 2 must reach frame 0"
    assert np.abs(out - _image_frame_by_frame(image_params, LATENTS)).max() > 1e-3


def test_only_the_zero_output_projections_are_needed_for_the_invariant(video_params, image_params):
    """Everything in the temporal layers except proj_out / to_out may be anything: still the image model."""
    flat = flatten(video_params["temporal"])
    zero_outputs = {k for k in flat if k[-2] in ("proj_out", "to_out")}
    assert zero_outputs and all(not np.any(np.asarray(flat[k])) for k in zero_outputs)
    noisy = _perturbed(video_params["temporal"], 0.5, seed=3)
    noisy = jax.tree_util.tree_map_with_path(
        lambda path, a: jnp.zeros_like(a) if path[-2].key in ("proj_out", "to_out") else a, noisy
    )
    params = {**_without_hint(video_params), "temporal": noisy}
    out = np.asarray(_video(PLAIN)(params, LATENTS, TIMESTEPS, TEXT))
    np.testing.assert_allclose(out, _image_frame_by_frame(image_params, LATENTS), atol=TOL, rtol=0)


def test_hint_reaches_every_frame_and_the_mask_marks_frame_0(video_params):
    """With a trained hint conv and identical frames, frame 0 (masked) differs from frames 1 and 2,
    which see the same hint without the mask and so stay equal (temporal layers still at identity)."""
    params = {**video_params, "hint_conv_in": _perturbed(video_params["hint_conv_in"], 0.1, seed=4)}
    same_frames = np.repeat(LATENTS[:, :1], F, axis=1)
    down, mid = _zero_residuals()
    video = _video(HINTED)
    with_hint = np.asarray(video(params, same_frames, TIMESTEPS, TEXT, down, mid, HINT))
    zero_hint = np.asarray(video(params, same_frames, TIMESTEPS, TEXT, down, mid, np.zeros_like(HINT)))
    assert np.abs(with_hint[:, 0] - with_hint[:, 1]).max() > 1e-3
    np.testing.assert_array_equal(with_hint[:, 1], with_hint[:, 2])
    assert np.abs(with_hint[:, 2] - zero_hint[:, 2]).max() > 1e-3, "unmasked frames see the hint too"


def test_hint_conv_is_the_widened_conv_in(video_params):
    """conv_in(latents) + hint_conv_in([hint, mask]) == one conv_in widened to [latents, hint, mask]."""
    params = {**video_params, "hint_conv_in": _perturbed(video_params["hint_conv_in"], 0.1, seed=6)}
    latents, hint = LATENTS[:, 0], np.concatenate([HINT, np.ones_like(HINT[..., :1])], axis=-1)

    def conv(weights, x, use_bias=True):
        module = nn.Conv(32, (3, 3), padding=((1, 1), (1, 1)), use_bias=use_bias)
        return np.asarray(module.apply({"params": weights}, x))

    split = conv(params["spatial"]["conv_in"], latents) + conv(params["hint_conv_in"], hint, use_bias=False)
    widened = conv(widened_conv_in(params), np.concatenate([latents, hint], axis=-1))
    assert np.abs(split - conv(params["spatial"]["conv_in"], latents)).max() > 1e-2, "hint must count"
    np.testing.assert_allclose(widened, split, atol=1e-5, rtol=0)


@pytest.mark.parametrize("frames", [1, 3, 8])
@pytest.mark.parametrize("config", [PLAIN, HINTED], ids=["plain", "hinted"])
def test_output_shape_for_any_frame_count(video_params, config, frames):
    params = video_params if config.hint_concat else _without_hint(video_params)
    sample = jax.ShapeDtypeStruct((B, frames, SIZE, SIZE, 4), jnp.float32)
    hint = jax.ShapeDtypeStruct((B, SIZE, SIZE, 4), jnp.float32) if config.hint_concat else None
    out = jax.eval_shape(
        lambda p, x, h: VideoUNet(config).apply({"params": p}, x, 5.0, TEXT, hint_latent=h),
        params,
        sample,
        hint,
    )
    assert out.shape == (B, frames, SIZE, SIZE, 4) and out.dtype == jnp.float32


def test_jitted_calls_are_bit_identical(video_params):
    params = _without_hint(video_params)
    params = {**params, "temporal": _perturbed(params["temporal"], 0.1, seed=5)}
    first = np.asarray(_video(PLAIN)(params, LATENTS, TIMESTEPS, TEXT))
    second = np.asarray(_video(PLAIN)(params, LATENTS, TIMESTEPS, TEXT))
    fresh = np.asarray(_video.__wrapped__(PLAIN)(params, LATENTS, TIMESTEPS, TEXT))  # traced anew
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, fresh)


def test_inflation_keeps_the_image_tree_exactly(video_params, image_params):
    assert set(video_params) == {"spatial", "temporal", "hint_conv_in"}
    spatial = video_params["spatial"]
    assert jax.tree.structure(spatial) == jax.tree.structure(image_params)
    for ours, theirs in zip(jax.tree.leaves(spatial), jax.tree.leaves(image_params), strict=True):
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert set(video_params["temporal"]) == {"down_0", "down_1", "mid", "up_0", "up_1"}
    hint_kernel = video_params["hint_conv_in"]["kernel"]
    assert hint_kernel.shape == (3, 3, HINTED.hint_channels + 1, 32) and not np.any(np.asarray(hint_kernel))
    assert "hint_conv_in" not in inflate(image_params, PLAIN, jax.random.key(1))


def test_bad_inputs_are_one_line_errors(video_params, image_params):
    broken = {**image_params, "conv_in": {**image_params["conv_in"], "kernel": jnp.zeros((3, 3, 5, 32))}}
    with pytest.raises(UserError, match="conv_in/kernel"):
        inflate(broken, HINTED, jax.random.key(0))
    apply = functools.partial(VideoUNet(PLAIN).apply, {"params": _without_hint(video_params)})
    with pytest.raises(UserError, match="hint_latent"):
        apply(LATENTS, 1.0, TEXT, hint_latent=HINT)
    with pytest.raises(UserError, match="sample"):
        apply(LATENTS[:, 0], 1.0, TEXT)
    down, mid = _zero_residuals()
    with pytest.raises(UserError, match=r"down_block_additional_residuals\[0\]"):
        apply(LATENTS, 1.0, TEXT, [down[0][:, :2], *down[1:]], mid)
    with pytest.raises(UserError, match="temporal_attention_heads"):
        dataclasses.replace(PLAIN, temporal_attention_heads=5)
