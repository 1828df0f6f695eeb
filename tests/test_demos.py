"""The demos without a server: pages build without a model, every event is named and queued sanely,
the lazy core, the shared helpers, the bundled examples, the `demo` command's errors, the scripts."""

from __future__ import annotations

import importlib.util
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from controlsprint.demos import APPS, app_names
from controlsprint.errors import UserError
from tests.conftest import REPO

pytest.importorskip("gradio")


def unloadable():
    """A SharedCore whose model must never load (building pages must not need it)."""
    from controlsprint.demos.core import SharedCore

    def refuse():
        raise AssertionError("the model was loaded")

    return SharedCore(refuse)


@pytest.mark.parametrize("app", app_names())
def test_pages_build_without_the_model_and_name_every_event(app):
    from controlsprint.demos.launch import QUEUE_SIZE, build

    core = unloadable()
    demo = build(app, core)
    assert not core.loaded
    fns = list(demo.fns.values())
    apps = list(APPS) if app == "all" else [app]
    assert {fn.api_name.split("_")[0] for fn in fns} == set(apps)
    assert all(fn.api_name for fn in fns)
    generators = [fn for fn in fns if fn.api_name.endswith("_generate")]
    assert len(generators) == len(apps)
    for fn in generators:  # one core, one queue slot: generations wait their turn, with a progress bar
        assert fn.concurrency_id == "generate" and fn.concurrency_limit == 1 and fn.tracks_progress
    previews = [fn for fn in fns if fn.api_name.endswith(("_condition", "_segment"))]
    assert len(previews) == len(apps) and all(fn.concurrency_limit == 2 for fn in previews)
    assert demo._queue.max_size == QUEUE_SIZE


def test_shared_core_loads_once_for_concurrent_first_requests():
    from controlsprint.demos.core import SharedCore

    calls = []

    def load():
        calls.append(1)
        time.sleep(0.2)  # long enough for every thread to arrive while loading
        return SimpleNamespace(controlnet_names=("canny",), default_guidance=7.5)

    shared = SharedCore(load)
    got = []
    threads = [threading.Thread(target=lambda: got.append(shared.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(got) == 8 and all(core is got[0] for core in got)
    assert shared.require("canny") is got[0]
    with pytest.raises(UserError, match=r"no 'hands' ControlNet \(it has: canny\); start the demo with --controlnet hands=DIR"):  # fmt: skip
        shared.require("hands")
    assert SharedCore.of(shared) is shared and SharedCore.of(got[0]).get() is got[0]


def test_sliders_start_at_the_models_guidance_scale_without_loading_it(tmp_path, cli):
    """A model folder's recorded guidance_scale (export --guidance-scale) is read from its
    controlsprint.json, not its weights, so the pages build with their slider at it and nothing loads."""
    import gradio as gr

    from controlsprint.demos.core import SharedCore
    from controlsprint.demos.launch import build
    from controlsprint.models.pipeline import save_pipeline
    from tests.test_pipeline_folder import tiny_pipeline

    save_pipeline(tmp_path / "plain", tiny_pipeline())
    code, _, err = cli(
        "export", tmp_path / "plain", "--out", tmp_path / "guided", "--format", "flax", "--guidance-scale", "2.5"
    )  # fmt: skip
    assert code == 0, err
    for folder, expected in (("guided", 2.5), ("plain", 7.5)):
        shared = SharedCore.from_model(str(tmp_path / folder))
        demo = build("canny", shared)
        sliders = [
            block.value
            for block in demo.blocks.values()
            if isinstance(block, gr.Slider) and block.label == "Guidance scale"
        ]
        assert shared.guidance == expected and sliders == [expected] and not shared.loaded


def test_working_size_keeps_aspect_and_rounds_to_the_model_blocks():
    from controlsprint.demos.ui import working_size

    core = SimpleNamespace(native_size=128, size_multiple=16)
    assert working_size(core, (625, 1024, 3), 0) == (128, 208)  # 1024 * 128 / 625 = 209.7 -> 208
    assert working_size(core, (640, 427, 3), 0) == (192, 128)  # 640 * 128 / 427 = 191.9 -> 192
    assert working_size(core, (625, 1024, 3), 256) == (256, 416)  # 419.4 -> 416 (8) -> 416 (16)
    assert working_size(SimpleNamespace(native_size=512, size_multiple=64), (600, 1000, 3), 0) == (512, 832)


def test_flatten_canvas_image_and_mask():
    from gradio import Error

    from controlsprint.demos.ui import canvas_image, canvas_mask, flatten

    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :3, 3] = 255  # left half opaque, right half transparent
    assert (flatten(rgba, 255)[:, :3] == 200).all() and (flatten(rgba, 255)[:, 3:] == 255).all()
    assert (flatten(rgba, 0)[:, 3:] == 0).all()
    background = np.full((8, 12, 4), 255, np.uint8)
    assert canvas_image({"background": background, "layers": [], "composite": None}, "Room").shape == (
        8,
        12,
        3,
    )
    with pytest.raises(Error, match="Room: no image given"):
        canvas_image({"background": None, "layers": [], "composite": None}, "Room")
    layer = np.zeros((4, 6, 4), np.uint8)  # painted at half the picture's size
    layer[1:3, 2:4, 3] = 255
    mask = canvas_mask({"background": background, "layers": [layer]}, (8, 12, 3))
    assert mask.shape == (8, 12) and mask.sum() == 16 and mask[2:6, 4:8].all()
    assert not canvas_mask({"layers": []}, (8, 12, 3)).any()


def test_keep_luma_takes_brightness_from_the_photo_and_colour_from_the_model():
    import cv2

    from controlsprint.demos.colorize import keep_luma

    gray = np.repeat(np.linspace(60, 200, 64, dtype=np.uint8)[None, :, None], 32, axis=0).repeat(3, axis=2)
    colours = np.zeros((8, 16, 3), np.uint8)
    colours[:] = (150, 90, 60)  # one brownish colour, at the model's small size
    merged = keep_luma(gray, colours)
    assert merged.shape == gray.shape
    ycrcb = cv2.cvtColor(merged, cv2.COLOR_RGB2YCrCb).astype(int)
    assert np.abs(ycrcb[..., 0] - gray[..., 0]).max() <= 1  # the photo's brightness, pixel for pixel
    reference = cv2.cvtColor(colours[:1, :1], cv2.COLOR_RGB2YCrCb).astype(int)[0, 0]
    assert np.abs(ycrcb[..., 1:] - reference[1:]).max() <= 2  # the model's colour everywhere


def test_bundled_examples_are_small_reproducible_pictures(tmp_path):
    from controlsprint.conditions import get_extractor
    from controlsprint.demos.ui import EXAMPLES_DIR, example
    from controlsprint.imageio import load_image

    spec = importlib.util.spec_from_file_location("make_examples", REPO / "demos" / "make_examples.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    captions = maker.write_examples(tmp_path)
    for name, caption in captions.items():
        assert (tmp_path / name).read_bytes() == (EXAMPLES_DIR / name).read_bytes(), name
        assert (EXAMPLES_DIR / name).stat().st_size < 64 * 1024
        assert example(name) == (str(EXAMPLES_DIR / name), caption)
    # Each app's example works with that app: MediaPipe finds the synthetic hands.
    assert len(get_extractor("hands").extract(load_image(example("hands.png")[0])).landmarks) >= 1
    grey = load_image(example("grey.png")[0])
    assert np.array_equal(grey[..., 0], grey[..., 1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "70000"], "--port 70000: must be between 0 and 65535"),
        (["canny", "--model", "/no/such/model"], "/no/such/model"),
        (["--sam-model", "/no/such/sam"], "SAM model folder /no/such/sam: no such directory"),
        (["--controlnet", "canny"], "--controlnet canny: expected NAME=VALUE"),
        (["paint"], "argument app: invalid choice: 'paint'"),
    ],
)
def test_demo_command_errors_are_one_line(cli, args, message):
    code, out, err = cli("demo", *args)
    assert code == 2 and out == ""
    assert message in err and err.count("\n") == 1


def test_a_port_in_use_is_a_user_error():
    import socket

    from controlsprint.demos.launch import build, start

    demo = build("colorize", unloadable())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"cannot serve on 127.0.0.1:{port}"):
            start(demo, port=port)


@pytest.mark.parametrize("script", ["canny", "sam", "hands", "interior", "colorize", "video", "suite"])
def test_demo_scripts_expose_the_package_factories(script):
    spec = importlib.util.spec_from_file_location(f"demo_script_{script}", REPO / "demos" / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.create_demo is importlib.import_module(f"controlsprint.demos.{script}").create_demo
    assert (
        f'run_script("{"all" if script == "suite" else script}")'
        in (REPO / "demos" / f"{script}.py").read_text()
    )


def test_demo_script_runs_as_a_program():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(REPO / "demos" / "hands.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "usage: controlsprint demo" in result.stdout
