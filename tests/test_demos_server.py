"""The demos as real servers on 127.0.0.1: every api_name called with gradio_client on the real test
photos, bad uploads answered with messages, concurrent requests, a real browser, the CLI process.

One tiny model (ControlNets canny, segment, hands, gray; 128 px native, 16 px blocks) serves every
app; generations use 2 steps. Expected sizes: the photo scaled so its short side is 128, each side
rounded to 8 (the extractors' rule), then down to 16 (the tiny UNet's block).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from controlsprint.models.pipeline import save_pipeline
from tests.browser import CHROMIUM, chromium_page, upload_to_editor
from tests.conftest import REPO, sigint_live
from tests.test_pipeline_folder import tiny_pipeline, with_live_zero_convs

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

APPS = ("canny", "sam", "hands", "interior", "colorize", "all")
STEPS = 2
# After the prompt: negative prompt, steps, guidance, control strength, seed, short side (0: native).
SETTINGS = ("", STEPS, 7.5, 1.0, 0, 0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    pipe = with_live_zero_convs(tiny_pipeline())
    controlnet = pipe.controlnets["canny"]
    folder = tmp_path_factory.mktemp("demo-model") / "tiny"
    return save_pipeline(folder, pipe.with_controlnets({n: controlnet for n in ("segment", "hands", "gray")}))


@pytest.fixture(scope="module")
def core(model_dir):
    from controlsprint.inference.loading import load_core

    return load_core(str(model_dir))


@pytest.fixture(scope="module")
def urls(core):
    """Every app and the suite served at once, each on its own free port, over the same core."""
    from controlsprint.demos.launch import build, start

    demos = {app: build(app, core) for app in APPS}
    served = {app: start(demo, host="127.0.0.1", port=0) for app, demo in demos.items()}
    yield served
    for demo in demos.values():
        demo.close(verbose=False)


@pytest.fixture(scope="module")
def clients(urls):
    return {app: Client(url, verbose=False) for app, url in urls.items()}


def editor(path, *layers) -> dict:
    """What an API client sends for an ImageEditor input."""
    return {
        "background": handle_file(str(path)),
        "layers": [handle_file(str(x)) for x in layers],
        "composite": None,
    }


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def rgb(path) -> np.ndarray:
    from controlsprint.imageio import load_image

    return load_image(path)


# -- every api_name, real photos ----------------------------------------------------------------------


def test_every_app_names_the_api_the_tests_call(clients):
    endpoints = {app: set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) for app, client in clients.items()}  # fmt: skip
    expected = {
        "canny": {"/canny_condition", "/canny_generate"},
        "sam": {"/sam_segment", "/sam_generate"},
        "hands": {"/hands_condition", "/hands_generate"},
        "interior": {"/interior_segment", "/interior_generate"},
        "colorize": {"/colorize_condition", "/colorize_generate"},
    }
    for app, names in expected.items():
        assert endpoints[app] == names
    video = {"/video_condition", "/video_generate"}  # the video app needs a video model: test_demos_video.py
    assert endpoints["all"] == set().union(*expected.values(), video)  # the suite mounts every app unchanged


@pytest.mark.parametrize("app", ["canny", "all"])
def test_canny(clients, photos, app):
    client = clients[app]
    photo = editor(photos / "cat.jpg")  # 1024x625 -> 208x128
    edges = pixels(client.predict(photo, 100, 200, 0, api_name="/canny_condition"))
    assert edges.shape == (128, 208, 3) and set(np.unique(edges)) == {0, 255}  # binary edge map
    condition, image = client.predict(photo, 100, 200, "a cat", *SETTINGS, api_name="/canny_generate")
    assert np.array_equal(pixels(condition), edges)
    assert pixels(image).shape == (128, 208, 3)
    # Higher thresholds keep fewer edges: the sliders reach the extractor.
    fewer = pixels(client.predict(photo, 200, 250, 0, api_name="/canny_condition"))
    assert 0 < (fewer > 0).sum() < (edges > 0).sum()


def test_canny_size_setting(clients, photos):
    shot = clients["canny"].predict(editor(photos / "cat.jpg"), 100, 200, 256, api_name="/canny_condition")
    assert pixels(shot).shape == (256, 416, 3)  # short side 256: 1024 * 256 / 625 = 419 -> 416


def test_sam_segments_then_generates_from_the_map_or_a_painted_one(clients, photos, tmp_path):
    client = clients["sam"]
    photo = handle_file(str(photos / "dinner_table.jpg"))  # 427x640 portrait -> 128x192
    segmented, notice = client.predict(photo, 0, api_name="/sam_segment")
    segmentation = pixels(segmented["background"])
    assert segmentation.shape == (192, 128, 3) and len(np.unique(segmentation.reshape(-1, 3), axis=0)) > 2
    assert "classical offline backend" in notice  # no SAM folder configured: the offline segmenter
    used, image = client.predict(photo, None, "a table", *SETTINGS, api_name="/sam_generate")
    assert np.array_equal(pixels(used["background"]), segmentation) and pixels(image).shape == (192, 128, 3)
    # A painted map (two regions) without a photo: the map's size sets the output's.
    painted = np.zeros((256, 384, 3), np.uint8)
    painted[:, 192:] = (255, 0, 0)
    Image.fromarray(painted).save(tmp_path / "map.png")
    used, image = client.predict(None, editor(tmp_path / "map.png"), "a red square", *SETTINGS, api_name="/sam_generate")  # fmt: skip
    assert pixels(image).shape == (128, 192, 3)
    assert np.array_equal(pixels(used["background"])[:, 96:], np.broadcast_to([255, 0, 0], (128, 96, 3)))


def test_hands_draws_skeletons_and_generates(clients, photos):
    client = clients["hands"]
    photo = handle_file(str(photos / "hand_thumb_up.jpg"))  # 640x521 -> 160x128
    skeleton, found = client.predict(photo, 0.5, 0, api_name="/hands_condition")
    assert found == "1 hand(s) found"
    skeleton = pixels(skeleton)
    assert skeleton.shape == (128, 160, 3) and 0 < (skeleton.max(axis=-1) > 0).mean() < 0.5
    condition, image = client.predict(photo, 0.5, "a hand", *SETTINGS, api_name="/hands_generate")
    assert np.array_equal(pixels(condition), skeleton) and pixels(image).shape == (128, 160, 3)


def test_hands_without_a_hand_is_a_message(clients, photos):
    with pytest.raises(AppError, match="no hand found"):
        clients["hands"].predict(handle_file(str(photos / "cat.jpg")), 0.5, "x", *SETTINGS, api_name="/hands_generate")  # fmt: skip


def test_interior_repaints_only_the_painted_region(clients, photos, tmp_path):
    client = clients["interior"]
    room = photos / "two_thumbs_up.jpg"  # 640x427 -> works at 192x128, answers at 640x427
    layer = np.zeros((427, 640, 4), np.uint8)
    layer[100:300, 200:420] = (255, 0, 255, 255)  # the visitor's brush strokes
    Image.fromarray(layer).save(tmp_path / "strokes.png")
    segmentation = pixels(client.predict(editor(room), 0, api_name="/interior_segment"))
    assert segmentation.shape == (128, 192, 3)
    condition, image = client.predict(editor(room, tmp_path / "strokes.png"), 1.0, "a room", *SETTINGS, api_name="/interior_generate")  # fmt: skip
    original, redesigned = rgb(room), pixels(image)
    assert np.array_equal(pixels(condition), segmentation)
    assert redesigned.shape == original.shape
    painted = layer[..., 3] > 0
    assert np.array_equal(redesigned[~painted], original[~painted])  # unpainted pixels kept exactly
    assert (redesigned[painted] != original[painted]).any(axis=-1).mean() > 0.5
    with pytest.raises(AppError, match="nothing painted"):
        client.predict(editor(room), 1.0, "a room", *SETTINGS, api_name="/interior_generate")


def test_colorize_keeps_the_photo_size_or_returns_the_model_picture(clients, photos):
    from controlsprint.conditions.base import resize_rgb

    client = clients["colorize"]
    photo = handle_file(str(photos / "cat.jpg"))
    gray = pixels(client.predict(photo, api_name="/colorize_condition"))
    assert gray.shape == (625, 1024, 3) and np.array_equal(gray[..., 0], gray[..., 2])
    condition, small = client.predict(photo, False, "a cat", *SETTINGS, api_name="/colorize_generate")
    assert pixels(condition).shape == pixels(small).shape == (128, 208, 3)
    condition, colours = client.predict(photo, True, "a cat", *SETTINGS, api_name="/colorize_generate")
    assert np.array_equal(pixels(condition), gray)
    # Full size: the photo's own brightness (its detail) under the model's colours, scaled up. The
    # reference merges the channels with Pillow's YCbCr (the same BT.601 full-range transform).
    _, cb, cr = Image.fromarray(resize_rgb(pixels(small), (625, 1024))).convert("YCbCr").split()
    reference = np.asarray(Image.merge("YCbCr", (Image.fromarray(gray[..., 0]), cb, cr)).convert("RGB"))
    assert np.abs(pixels(colours).astype(int) - reference).max() <= 3


# -- bad input ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, photos) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {"text": folder / "notes.png", "huge": folder / "huge.png", "truncated": folder / "broken.jpg"}
    files["text"].write_text("not an image at all")
    Image.new("1", (5000, 5000)).save(files["huge"])  # 25 MP, a few KB on disk
    data = (photos / "cat.jpg").read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 3])
    return files


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("text", "Photo: notes.png is not an image"),
        ("huge", "Photo: huge.png is 5000x5000 pixels, above this demo's limit of 4096x4096"),
        ("truncated", "Photo broken.jpg: truncated or corrupt image"),
        (None, "Photo: no image given"),
    ],
)
def test_bad_photo_gets_a_message(clients, bad_files, kind, message):
    photo = handle_file(str(bad_files[kind])) if kind else None
    with pytest.raises(AppError, match=re.escape(message)):
        clients["colorize"].predict(photo, True, "x", *SETTINGS, api_name="/colorize_generate")


def test_bad_canvas_upload_and_empty_prompt_get_messages(clients, bad_files, photos):
    with pytest.raises(AppError, match=re.escape("Image: notes.png is not an image")):
        clients["canny"].predict(editor(bad_files["text"]), 100, 200, 0, api_name="/canny_condition")
    with pytest.raises(AppError, match=re.escape("Image: no image given")):
        clients["canny"].predict(None, 100, 200, 0, api_name="/canny_condition")
    with pytest.raises(AppError, match="low_threshold 200"):  # the extractor's own check, one line
        clients["canny"].predict(editor(photos / "cat.jpg"), 200, 100, 0, api_name="/canny_condition")
    with pytest.raises(AppError, match="Prompt: empty"):
        clients["canny"].predict(editor(photos / "cat.jpg"), 100, 200, " ", *SETTINGS, api_name="/canny_generate")  # fmt: skip


def test_oversized_upload_is_refused_and_the_server_keeps_serving(urls, clients, tmp_path, photos):
    import httpx

    big = tmp_path / "big.png"
    big.write_bytes(os.urandom(21 * 1024 * 1024))  # above the 20 MB limit
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the limit
        clients["hands"].predict(handle_file(str(big)), 0.5, 0, api_name="/hands_condition")
    with big.open("rb") as stream:  # and the server enforces it for anyone else
        response = httpx.post(f"{urls['hands']}gradio_api/upload", files={"files": stream}, timeout=60)
    assert response.status_code == 413
    _, found = clients["hands"].predict(handle_file(str(photos / "hand_thumb_up.jpg")), 0.5, 0, api_name="/hands_condition")  # fmt: skip
    assert found == "1 hand(s) found"


# -- progress, lazy loading -----------------------------------------------------------------------------


def test_first_request_loads_the_model_and_reports_progress(model_dir, photos):
    """A Space-style app: built without a model, the first request loads it and says so."""
    from controlsprint.demos.core import SharedCore
    from controlsprint.demos.launch import build, start

    shared = SharedCore.from_model(str(model_dir))
    demo = build("canny", shared)
    assert not shared.loaded  # building the Blocks loaded nothing
    try:
        job = Client(start(demo, port=0), verbose=False).submit(
            editor(photos / "cat.jpg"), 100, 200, "a cat", *SETTINGS, api_name="/canny_generate"
        )
        _, image = job.result(timeout=600)
        assert pixels(image).shape == (128, 208, 3) and shared.loaded
        updates = []
        while not job.communicator.updates.empty():
            updates.append(job.communicator.updates.get_nowait())
        units = [unit for update in updates for unit in getattr(update, "progress_data", None) or ()]
        descriptions = [unit.desc for unit in units]
        assert descriptions[0] == "loading the model (first request only)"
        # The stage after it, if the queue's 10 ms progress tick caught it before the answer.
        assert set(descriptions[1:]) <= {f"denoising: {STEPS} steps at 208x128"}
    finally:
        demo.close(verbose=False)


# -- load: 20 at once -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_twenty_concurrent_requests_all_succeed(urls, photos):
    """20 visitors (own clients) at once on the suite: previews and generations, all answered, and a
    seed gives the same picture whoever else is in the queue."""
    photo = str(photos / "cat.jpg")

    def visit(index: int):
        client = Client(urls["all"], verbose=False)
        if index % 4 == 3:
            return "preview", client.predict(editor(photo), 100, 200, 0, api_name="/canny_condition")
        settings = ("", STEPS, 7.5, 1.0, index % 3, 0)
        return index % 3, client.predict(
            editor(photo), 100, 200, "a cat", *settings, api_name="/canny_generate"
        )[1]

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        results = list(pool.map(visit, range(20)))
    by_seed: dict = {}
    for key, path in results:
        image = pixels(path)
        assert image.shape == (128, 208, 3)
        by_seed.setdefault(key, []).append(image)
    assert len(by_seed["preview"]) == 5
    for seed in range(3):
        assert all(np.array_equal(image, by_seed[seed][0]) for image in by_seed[seed])
    assert not np.array_equal(by_seed[0][0], by_seed[1][0])


# -- a real browser ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def browser_page():
    """(page, playwright's sync_api): a headless Chromium page at 1280x1000 (tests/browser.py).

    Skips without Chromium or Playwright, unless CONTROLSPRINT_REQUIRE_BROWSER is set (CI): then fails."""
    if not Path(CHROMIUM).is_file():
        if os.environ.get("CONTROLSPRINT_REQUIRE_BROWSER"):
            pytest.fail(
                f"CONTROLSPRINT_REQUIRE_BROWSER is set but {CHROMIUM} is missing (apt-get install chromium)"
            )
        pytest.skip(
            f"{CHROMIUM} not installed (apt-get install chromium); CI sets CONTROLSPRINT_REQUIRE_BROWSER"
        )
    pytest.importorskip("playwright.sync_api")
    with chromium_page() as opened:
        yield opened


@pytest.mark.slow
def test_browser_uploads_generates_and_screenshots_the_suite(urls, clients, tmp_path):
    from controlsprint.demos.canny import PROMPT
    from controlsprint.demos.ui import example

    url = urls["all"]
    outside = []
    with browser_page() as (page, sync_api):
        page.on(
            "request",
            lambda r: None if r.url.startswith((url, "data:", "blob:")) else outside.append(r.url),
        )
        page.goto(url)
        page.locator("#canny-input").wait_for()
        assert page.locator("button[role=tab]").all_inner_texts()[:5] == [
            "Canny edges", "Segmentation (SAM)", "Hands", "Interior design", "Colorization",
        ]  # fmt: skip
        # The bundled example (our own picture, so the screenshot may go into the docs): 256 -> 128 px.
        upload_to_editor(page, "#canny-input", example("shapes.png")[0], sync_api.TimeoutError)
        page.locator("#canny-settings").click()  # open the accordion; 2 steps keep the test quick
        page.locator("#canny-steps input[type=number]").fill(str(STEPS))
        page.locator("#canny-steps input[type=number]").press("Enter")
        page.locator("#canny-steps input[type=number]").blur()  # gradio commits a number on change/blur
        page.locator("#canny-generate").click()
        output = page.locator("#canny-output img")
        page.locator("#canny-output img, .toast-body").first.wait_for(state="visible", timeout=300_000)
        assert page.locator(".toast-body").all_inner_texts() == []  # no error shown
        served = page.request.get(output.get_attribute("src"))
        assert served.ok
        image = np.asarray(Image.open(io.BytesIO(served.body())))
        assert image.shape[:2] == (128, 128)
        # What the page sent is what an API client sends: the same picture comes back.
        same = clients["all"].predict(
            editor(example("shapes.png")[0]), 100, 200, PROMPT, *SETTINGS, api_name="/canny_generate"
        )[1]
        # Bit-equal when this test runs alone; in the full suite (after other servers and processes have
        # filled the compilation cache) one run in several differed in a few values while the corners
        # matched, cause not yet found (closing note 2026-11-24). Allow that, print it, and still fail on
        # a different picture (another prompt, seed or step count changes nearly every value).
        differ = image[..., :3] != pixels(same)
        spread = np.abs(image[..., :3].astype(int) - pixels(same).astype(int))
        assert differ.mean() <= 0.02 and spread.mean() <= 0.5, (
            f"{differ.mean():.2%} of values differ, mean {spread.mean():.2f}, max {spread.max()}"
        )
        shot = tmp_path / "suite.png"
        page.screenshot(path=str(shot), full_page=True)
    assert Image.open(shot).size[0] == 1280
    assert outside == []  # the page fetched nothing from anywhere but the demo server


# -- the CLI as a process -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_serves_until_ctrl_c(model_dir, photos):
    process = subprocess.Popen(
        [sys.executable, "-m", "controlsprint", "demo", "hands", "--model", str(model_dir), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=sigint_live,
    )
    try:
        line = process.stdout.readline()  # blocks until the server is up (model loaded first)
        match = re.fullmatch(r"controlsprint demo: hands running on (http://127\.0\.0\.1:\d+/) \(Ctrl-C to stop\)\n", line)  # fmt: skip
        assert match, line + process.stderr.read() if process.poll() is not None else line
        client = Client(match.group(1), verbose=False)
        _, found = client.predict(handle_file(str(photos / "two_thumbs_up.jpg")), 0.3, 0, api_name="/hands_condition")  # fmt: skip
        assert found.endswith("hand(s) found")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert "controlsprint demo: stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
