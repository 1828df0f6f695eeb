"""The video demo: its helpers, and the app as a real server on 127.0.0.1 called with gradio_client.

The model is the tests' tiny pipeline (128 px native, 16 px blocks) with temporal layers from
`inflate`, their weights nudged off zero so that frames interact. Every generation uses one shape (the
cat photo's hint at 128x208, FRAMES frames, STEPS steps, guidance 5), so the module compiles one
sampling program.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from tests.test_pipeline_folder import tiny_pipeline

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

FRAMES = 4
STEPS = 2
SIZE = (128, 208)  # cat.jpg (1024x625) at the model's 128 px short side, sides rounded down to 16


def settings(frames=FRAMES, fps=8, hold=True, prompt="a cat walking to the right", seed=0) -> tuple:
    """The generate event's inputs after the hint: frames, fps, hold first frame, prompt, negative
    prompt, steps, guidance, seed."""
    return frames, fps, hold, prompt, "", STEPS, 5.0, seed


def video_pipeline():
    import jax

    from controlsprint.models.io import Component
    from controlsprint.models.video_configs import TINY_VIDEO_UNET
    from controlsprint.models.video_io import temporal_params
    from controlsprint.models.video_unet import inflate

    pipe = tiny_pipeline()
    params = temporal_params(inflate(pipe.unet.params, TINY_VIDEO_UNET, jax.random.key(0)))
    # The temporal layers' output projections start at zero (the video model then equals the image
    # model frame by frame); nudge every weight so the temporal layers take part.
    noise = np.random.default_rng(7)
    params = jax.tree.map(
        lambda a: np.asarray(a) + 0.05 * noise.standard_normal(a.shape).astype(np.float32), params
    )
    return dataclasses.replace(pipe, temporal=Component("temporal", TINY_VIDEO_UNET, params))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from controlsprint.models.pipeline import save_pipeline

    return save_pipeline(tmp_path_factory.mktemp("video-model") / "tiny-video", video_pipeline())


@pytest.fixture(scope="module")
def core(model_dir):
    from controlsprint.inference.loading import load_core

    loaded = load_core(str(model_dir))
    assert loaded.has_video
    return loaded


@pytest.fixture(scope="module")
def image_only_core(core):
    """The same model without its temporal/ part: an image model."""
    from controlsprint.inference.core import InferenceCore

    return InferenceCore(dataclasses.replace(core.pipeline, temporal=None))


@pytest.fixture(scope="module")
def servers(core, image_only_core):
    """The video app over the video model, and the suite over the image-only model."""
    from controlsprint.demos.launch import build, start

    demos = {"video": build("video", core), "all": build("all", image_only_core)}
    urls = {name: start(demo, host="127.0.0.1", port=0) for name, demo in demos.items()}
    yield {name: Client(url, verbose=False) for name, url in urls.items()}
    for demo in demos.values():
        demo.close(verbose=False)


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def cells(strip: np.ndarray, count: int, columns: int = 8) -> np.ndarray:
    """The frames of a filmstrip back as [F, H, W, 3] (rows of `columns` frames)."""
    columns = min(columns, count)
    rows = -(-count // columns)
    height, width = strip.shape[0] // rows, strip.shape[1] // columns
    return np.stack(
        [strip[i // columns * height :][:height, i % columns * width :][:, :width] for i in range(count)]
    )


def block_means(clip: np.ndarray, block: int = 8) -> np.ndarray:
    """Each frame's mean colour over `block`x`block` tiles (sides divisible by `block`)."""
    frames, height, width, _ = clip.shape
    tiles = clip.astype(np.float64).reshape(frames, height // block, block, width // block, block, 3)
    return tiles.mean(axis=(2, 4))


# -- helpers, no server -------------------------------------------------------------------------------


def test_filmstrip_lays_frames_out_in_rows_of_eight():
    from controlsprint.demos.video import filmstrip

    frames = np.stack([np.full((2, 3, 3), 10 * i, np.uint8) for i in range(10)])
    strip = filmstrip(frames)
    assert strip.shape == (4, 24, 3)  # two rows of eight 3-px-wide frames
    for i in range(10):
        row, column = divmod(i, 8)
        assert (strip[2 * row : 2 * row + 2, 3 * column : 3 * column + 3] == 10 * i).all()
    assert (strip[2:, 6:] == 255).all()  # the second row's six empty cells are white
    assert np.array_equal(cells(strip, 10), frames)
    assert filmstrip(frames[:3]).shape == (2, 9, 3)  # fewer frames than a row: one row, no padding


def test_clip_folder_writes_webm_and_keeps_only_the_newest(tmp_path):
    from controlsprint.clipio import read_clip
    from controlsprint.demos.video import ClipFolder

    folder = ClipFolder(keep=2)
    frames = np.zeros((3, 32, 48, 3), np.uint8)
    frames[:, :, :24] = (200, 40, 40)
    paths = [folder.write(frames, 8.0) for _ in range(3)]
    assert len({p.name for p in paths}) == 3 and all(p.suffix == ".webm" for p in paths)
    assert not paths[0].exists() and paths[1].exists() and paths[2].exists()
    clip = read_clip(paths[2])
    assert clip.shape == (3, 32, 48, 3)
    assert np.abs(clip.astype(int) - frames).mean() < 8  # VP9 is lossy, but this is the clip written
    directory = paths[2].parent
    del folder
    assert not directory.exists()  # the folder goes with the app


def test_example_is_a_motion_first_frame_captioned_with_the_default_prompt():
    from controlsprint.data.synth import render_scene, row_seed
    from controlsprint.demos.ui import example
    from controlsprint.demos.video import EXAMPLE, PROMPT
    from controlsprint.imageio import load_image

    path, caption = example(EXAMPLE)
    assert caption == PROMPT
    scene = render_scene("motion", row_seed(11, 26), 128)  # demos/make_examples.py's seed and row
    assert scene.caption == PROMPT and np.array_equal(load_image(path), scene.frames[0])


# -- the app on a real server ------------------------------------------------------------------------


def test_video_app_names_its_events(servers):
    named = set(servers["video"].view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/video_condition", "/video_generate"}


@pytest.mark.slow  # compiles the video sampling program: about 20 s on a busy 2-core machine
def test_generate_returns_the_clip_and_its_frames_as_the_core_makes_them(servers, core, photos):
    from controlsprint.clipio import read_clip
    from controlsprint.conditions.base import resize_rgb
    from controlsprint.imageio import load_image
    from controlsprint.inference import VIDEO_HINT_STRENGTH, make_request

    client = servers["video"]
    hint = handle_file(str(photos / "cat.jpg"))
    video, strip = client.predict(hint, *settings(), api_name="/video_generate")
    assert video.endswith(".webm")
    clip, frames = read_clip(video), cells(pixels(strip), FRAMES)
    assert clip.shape == frames.shape == (FRAMES, *SIZE, 3)
    # The reference: the core itself, asked for the same clip from the hint at the working size.
    request = make_request(
        "a cat walking to the right", frames=FRAMES, hint_image=resize_rgb(load_image(photos / "cat.jpg"), SIZE),
        hint_strength=VIDEO_HINT_STRENGTH, steps=STEPS, guidance=5.0, seed=0, height=SIZE[0], width=SIZE[1],
    )  # fmt: skip
    expected = core.generate(request)[0]
    assert np.array_equal(frames, expected)  # the filmstrip is lossless
    # The WebM is the same clip: VP9 loses the tiny random model's pixel noise (mean error ~16 levels
    # per pixel here), but on 8x8 block means it stays within a few levels (~3; another seed's: ~37).
    assert np.abs(block_means(clip) - block_means(expected)).mean() < 6
    assert not np.array_equal(expected[0], expected[-1])  # a clip, not one picture repeated

    # The same seed gives the same frames; another seed other frames.
    again_video, again_strip = client.predict(hint, *settings(), api_name="/video_generate")
    assert np.array_equal(pixels(again_strip), pixels(strip))
    assert np.array_equal(read_clip(again_video), clip)
    assert again_video != video  # each answer its own file
    _, other = client.predict(hint, *settings(seed=1), api_name="/video_generate")
    assert not np.array_equal(pixels(other), pixels(strip))


def test_show_first_frame_gives_the_hint_at_the_working_size(servers, photos):
    from controlsprint.conditions.base import resize_rgb
    from controlsprint.imageio import load_image

    shown = servers["video"].predict(handle_file(str(photos / "cat.jpg")), api_name="/video_condition")
    assert np.array_equal(pixels(shown), resize_rgb(load_image(photos / "cat.jpg"), SIZE))


@pytest.mark.parametrize(
    ("hint", "inputs", "message"),
    [
        (None, settings(), "Hint image: no image given"),
        ("notes.png", settings(), "Hint image: notes.png is not an image"),
        ("cat.jpg", settings(prompt="  "), "Prompt: empty"),
        ("cat.jpg", settings(frames=17), "Value 17 is greater than maximum value 16"),  # gradio's check
    ],
)
def test_bad_inputs_get_messages(servers, photos, tmp_path, hint, inputs, message):
    if hint == "notes.png":
        (tmp_path / hint).write_text("not an image at all")
        upload = handle_file(str(tmp_path / hint))
    else:
        upload = handle_file(str(photos / hint)) if hint else None
    with pytest.raises(AppError, match=re.escape(message)):
        servers["video"].predict(upload, *inputs, api_name="/video_generate")


def test_suite_on_an_image_model_answers_video_requests_with_a_message(servers, photos):
    client = servers["all"]
    hint = handle_file(str(photos / "cat.jpg"))
    with pytest.raises(AppError, match=re.escape("the model has no temporal layers (no temporal/ folder)")):
        client.predict(hint, *settings(), api_name="/video_generate")
    # The server is fine: the tab's preview and the other apps still answer.
    assert pixels(client.predict(hint, api_name="/video_condition")).shape == (*SIZE, 3)
    assert pixels(client.predict(hint, api_name="/colorize_condition")).shape == (625, 1024, 3)


@pytest.mark.slow  # generates: with a cold compilation cache it compiles the program as above
def test_first_request_loads_the_model_and_reports_progress(model_dir, core, photos):
    """A Space-style app: built without a model; the first request loads it and says so, then the stage."""
    from controlsprint.demos.core import SharedCore
    from controlsprint.demos.launch import build, start

    shared = SharedCore.from_model(str(model_dir))
    demo = build("video", shared)
    assert not shared.loaded
    try:
        client = Client(start(demo, port=0), verbose=False)
        job = client.submit(handle_file(str(photos / "cat.jpg")), *settings(), api_name="/video_generate")
        _, strip = job.result(timeout=600)
        assert pixels(strip).shape == (SIZE[0], FRAMES * SIZE[1], 3) and shared.loaded
        updates = []
        while not job.communicator.updates.empty():
            updates.append(job.communicator.updates.get_nowait())
        descriptions = [
            unit.desc for update in updates for unit in getattr(update, "progress_data", None) or ()
        ]
        assert descriptions[0] == "loading the model (first request only)"
        # The stage after it, if the queue's 10 ms progress tick caught it before the answer.
        assert set(descriptions[1:]) <= {f"denoising {FRAMES} frames: {STEPS} steps at 208x128"}
    finally:
        demo.close(verbose=False)


@pytest.mark.slow  # generates (see above)
def test_the_page_gets_a_webm_url_served_as_video_webm(servers, photos):
    """What a browser does: upload, call the event over HTTP, fetch the answer's URL."""
    import json

    import httpx

    from controlsprint.clipio import read_clip

    url = servers["video"].src
    with (photos / "cat.jpg").open("rb") as stream:
        (uploaded,) = httpx.post(f"{url}gradio_api/upload", files={"files": stream}, timeout=60).json()
    hint = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    call = httpx.post(f"{url}gradio_api/call/video_generate", json={"data": [hint, *settings()]}, timeout=60)
    events = httpx.get(f"{url}gradio_api/call/video_generate/{call.json()['event_id']}", timeout=600).text
    assert "event: complete" in events, events
    video, _ = json.loads(events.split("event: complete\ndata: ", 1)[1].splitlines()[0])
    served = httpx.get(video["url"], timeout=60)
    assert served.status_code == 200 and served.headers["content-type"] == "video/webm"
    assert served.content[:4] == b"\x1a\x45\xdf\xa3" and b"webm" in served.content[:64]  # EBML, doctype webm
    assert read_clip(video["path"]).shape == (FRAMES, *SIZE, 3)


@pytest.mark.slow
def test_browser_plays_the_clip(servers, tmp_path):
    """Headless Chromium: upload the bundled example, generate, and the page's <video> decodes the WebM."""
    from controlsprint.demos.ui import example
    from controlsprint.demos.video import EXAMPLE
    from tests.test_demos_server import browser_page

    with browser_page() as (page, _):
        page.goto(servers["video"].src)
        page.locator("#video-input input[type=file]").set_input_files(example(EXAMPLE)[0])
        page.locator("#video-input img").wait_for()
        page.locator("#video-frames input[type=number]").fill(str(FRAMES))
        page.locator("#video-frames input[type=number]").press("Enter")
        page.locator("#video-settings").click()  # open the accordion; 2 steps keep the test quick
        page.locator("#video-steps input[type=number]").fill(str(STEPS))
        page.locator("#video-steps input[type=number]").press("Enter")
        page.locator("#video-generate").click()
        page.locator("#video-output video, .toast-body").first.wait_for(state="visible", timeout=300_000)
        assert page.locator(".toast-body").all_inner_texts() == []  # no error shown
        # Decoded: the browser knows the frame size (the example is 128x128) and the clip's length.
        page.wait_for_function(
            "() => { const v = document.querySelector('#video-output video');"
            " return v && v.readyState >= 2 && v.videoWidth > 0; }"
        )
        width, height, duration = page.evaluate(
            "() => { const v = document.querySelector('#video-output video');"
            " return [v.videoWidth, v.videoHeight, v.duration]; }"
        )
    assert (width, height) == (128, 128)
    assert duration == pytest.approx(FRAMES / 8, abs=0.15)  # FRAMES frames at 8 fps
