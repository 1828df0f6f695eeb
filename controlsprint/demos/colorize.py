"""Colorization: a grayscale photo -> colours from the gray ControlNet, shown beside the input.

By default the result keeps the photo's own size and brightness and takes only the colour from the
model (the model's picture, scaled up, gives chroma; the photo gives luma), so no detail is lost at
the model's small working size. Run it with `controlsprint demo colorize` or `python demos/colorize.py`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Colorization"
INTRO = (
    "Upload a black-and-white (or any) photo. The model sees only its brightness (**Show grayscale**) "
    "and paints colours that fit your prompt."
)
PROMPT = "a colourful photo"


def keep_luma(gray: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """`colours`' chroma at `gray`'s size on `gray`'s luma (BT.601 YCrCb, as the gray extractor uses)."""
    import cv2

    from controlsprint.conditions.base import resize_rgb

    ycrcb = cv2.cvtColor(resize_rgb(colours, gray.shape[:2]), cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = gray[..., 0]
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def create_demo(core) -> gr.Blocks:
    """The colorization app over `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    pool = ui.ExtractorPool()

    def show_gray(photo_path):
        photo = ui.read_image(photo_path, "Photo")
        return pool.extract("gray", photo, photo.shape[:2]).image

    def generate(
        photo_path, full_size, prompt, negative_prompt, steps, guidance, control_scale, seed, short_side,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        settings = ui.settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side)
        core = ui.core_for(shared, "gray", progress)
        photo = ui.read_image(photo_path, "Photo")
        size = ui.working_size(core, photo.shape, settings.short_side)
        condition = pool.extract("gray", photo, size).image
        colours = ui.generate(core, settings, {"gray": condition}, size, progress)
        if not full_size:
            return condition, colours
        gray = pool.extract("gray", photo, photo.shape[:2]).image
        return gray, keep_luma(gray, colours)

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            photo = ui.image_upload("Photo", elem_id="colorize-input")
            with gr.Column():
                full_size = gr.Checkbox(
                    True, label="Keep the photo's size and detail (take only the colours from the model)"
                )
                panel = ui.SettingsPanel("colorize", PROMPT, guidance=shared.guidance)
                with gr.Row():
                    show = gr.Button("Show grayscale")
                    run = gr.Button("Colorize", variant="primary", elem_id="colorize-generate")
        with gr.Row():  # the input the model sees and its colours, side by side
            condition = ui.result_image("Grayscale (the condition)")
            output = ui.result_image("Colorized", elem_id="colorize-output")
        ui.example_rows("colorize_example", [photo, panel.prompt], [list(ui.example("grey.png"))])
        ui.on_preview(show, show_gray, [photo], [condition], "colorize_condition")
        ui.on_generate(
            run, generate, [photo, full_size, *panel.inputs], [condition, output], "colorize_generate"
        )
    return demo
