"""`controlsprint generate` end to end on a tiny model folder: files, metadata, determinism, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from controlsprint.models.pipeline import save_pipeline
from tests.test_pipeline_folder import tiny_pipeline, with_live_zero_convs


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen") / "tiny"
    pipe = with_live_zero_convs(tiny_pipeline())
    return save_pipeline(folder, pipe.with_controlnets({"hands": pipe.controlnets["canny"]}))


def _args(model, photos, out, *extra):
    return [
        "generate", "--model", model, "--prompt", "a red circle", "--control", f"canny={photos / 'cat.jpg'}",
        "--steps", "3", "--seed", "5", "--out", out, *extra,
    ]  # fmt: skip


def test_generate_writes_png_with_parameters_and_is_reproducible(cli, model, photos, tmp_path):
    code, out, err = cli(*_args(model, photos, tmp_path / "a.png", "--scale", "canny=0.7"))
    assert code == 0, err
    image = Image.open(tmp_path / "a.png")
    # cat.jpg is 1024x625: the condition keeps its aspect at the model's native 128 px short side,
    # 128 x 209.7 -> 208 (a multiple of the tiny model's 16 px block)
    assert image.size == (208, 128) and image.mode == "RGB"
    params = json.loads(image.text["parameters"])
    assert params["prompt"] == "a red circle" and params["seed"] == 5 and params["steps"] == 3
    assert params["controls"][0]["name"] == "canny" and params["controls"][0]["scale"] == 0.7
    code, _, err = cli(*_args(model, photos, tmp_path / "b.png", "--scale", "canny=0.7"))
    assert code == 0, err
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_guidance_defaults_to_the_models_recorded_scale(cli, model, photos, tmp_path):
    code, _, err = cli(
        "export", model, "--out", tmp_path / "guided", "--format", "flax", "--guidance-scale", "2.5"
    )
    assert code == 0, err
    used = {}
    for name, folder, extra in (
        ("plain", model, ()),
        ("guided", tmp_path / "guided", ()),
        ("given", tmp_path / "guided", ("--guidance", "4")),
    ):
        args = _args(model, photos, tmp_path / f"{name}.png", *extra)
        args[args.index("--model") + 1] = folder
        code, _, err = cli(*args)
        assert code == 0, err
        used[name] = json.loads(Image.open(tmp_path / f"{name}.png").text["parameters"])["guidance"]
    assert used == {"plain": 7.5, "guided": 2.5, "given": 4.0}
    # the same weights: only the guidance differs, and so do the pictures
    plain = np.asarray(Image.open(tmp_path / "plain.png"), np.int16)
    assert np.abs(plain - np.asarray(Image.open(tmp_path / "guided.png"), np.int16)).max() > 0


def test_several_images_and_prompts_go_to_a_folder(cli, model, photos, tmp_path):
    args = _args(model, photos, tmp_path / "many", "--num-images", "2", "--prompt", "a blue square")
    code, _, err = cli(*args, "--width", "128", "--height", "128")
    assert code == 0, err
    files = sorted((tmp_path / "many").glob("*.png"))
    assert [f.name for f in files] == ["0000.png", "0001.png", "0002.png", "0003.png"]
    prompts = [json.loads(Image.open(f).text["parameters"])["prompt"] for f in files]
    assert prompts == ["a red circle", "a red circle", "a blue square", "a blue square"]
    pixels = [np.asarray(Image.open(f)) for f in files]
    assert all(p.shape == (128, 128, 3) for p in pixels) and not np.array_equal(pixels[0], pixels[1])


def test_raw_condition_and_inpaint(cli, model, photos, tmp_path):
    condition = tmp_path / "cond.png"
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(condition)
    init = np.asarray(Image.open(photos / "cat.jpg").convert("RGB").resize((128, 128)))
    Image.fromarray(init).save(tmp_path / "init.png")
    mask = np.zeros((128, 128), np.uint8)
    mask[40:90, 40:90] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    code, _, err = cli(
        "generate", "--model", model, "--prompt", "x", "--control", f"hands={condition}", "--raw-condition",
        "--init-image", tmp_path / "init.png", "--mask", tmp_path / "mask.png", "--strength", "1",
        "--steps", "2", "--out", tmp_path / "inpainted.png",
    )  # fmt: skip
    assert code == 0, err
    out = np.asarray(Image.open(tmp_path / "inpainted.png"))
    assert np.array_equal(out[mask == 0], init[mask == 0])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--control", "depth=x.png"], "x.png"),
        (["--steps", "0"], "steps=0"),
        (["--scale", "seg=0.5"], "--scale seg=...: no --control seg=IMAGE given"),
        (["--controlnet", "seg=/nonexistent"], "/nonexistent does not exist"),
        (["--out", "result.jpg"], "use a .png file name or a folder"),
        (["--scale", "canny=lots"], "--scale canny=lots"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, model, photos, tmp_path, extra, message):
    args = _args(model, photos, tmp_path / "o.png")
    if extra[0] == "--out":
        args = args[:-2]
    code, _, err = cli(*args, *extra)
    assert code == 2, err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_unknown_condition_and_mask_mismatch(cli, model, photos, tmp_path):
    code, _, err = cli("generate", "--model", model, "--prompt", "x", "--control", f"depth={photos / 'cat.jpg'}",
                       "--out", tmp_path / "o.png")  # fmt: skip
    assert code == 2 and "unknown condition 'depth'" in err
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "small-mask.png")
    code, _, err = cli("generate", "--model", model, "--prompt", "x", "--init-image", photos / "cat.jpg",
                       "--mask", tmp_path / "small-mask.png", "--out", tmp_path / "o.png")  # fmt: skip
    assert code == 2 and "mask size 64x64 does not match" in err
