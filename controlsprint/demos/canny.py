"""Canny control: upload a photo (or sketch on the canvas), tune the edge thresholds, generate from the edges.

Run it with `controlsprint demo canny` or `python demos/canny.py`.
"""

from __future__ import annotations

import gradio as gr

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Canny edges"
INTRO = (
    "Upload a photo, or draw on the empty canvas. Canny finds its edges (tune the thresholds and "
    "press **Show edges** to see them); the model then paints a new picture along those edges."
)
PROMPT = "a red circle above a blue square on a white background"


def create_demo(core) -> gr.Blocks:
    """The Canny app over `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    pool = ui.ExtractorPool()

    def edges(core, canvas, low: float, high: float, short_side: int):
        image = ui.canvas_image(canvas, "Image")
        size = ui.working_size(core, image.shape, short_side)
        options = {"low_threshold": int(low), "high_threshold": int(high)}
        return pool.extract("canny", image, size, **options).image, size

    def show_edges(canvas, low, high, short_side):
        return edges(shared.get(), canvas, low, high, int(short_side or 0))[0]

    def generate(
        canvas, low, high, prompt, negative_prompt, steps, guidance, control_scale, seed, short_side,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        settings = ui.settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side)
        core = ui.core_for(shared, "canny", progress)
        condition, size = edges(core, canvas, low, high, settings.short_side)
        return condition, ui.generate(core, settings, {"canny": condition}, size, progress)

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            with gr.Column():
                canvas = ui.image_canvas(
                    "Image",
                    elem_id="canny-input",
                    brush=gr.Brush(colors=["#000000", "#ffffff"], color_mode="defaults"),
                    canvas_size=(512, 512),
                )
                with gr.Row():
                    low = gr.Slider(0, 255, value=100, step=1, label="Low threshold")
                    high = gr.Slider(0, 255, value=200, step=1, label="High threshold")
                panel = ui.SettingsPanel("canny", PROMPT, guidance=shared.guidance)
                with gr.Row():
                    show = gr.Button("Show edges")
                    run = gr.Button("Generate", variant="primary", elem_id="canny-generate")
            with gr.Column():
                condition = ui.result_image("Edges (the condition)")
                output = ui.result_image("Generated", elem_id="canny-output")
        ui.example_rows("canny_example", [canvas, panel.prompt], [list(ui.example("shapes.png"))])
        ui.on_preview(show, show_edges, [canvas, low, high, panel.short_side], [condition], "canny_condition")
        ui.on_generate(
            run, generate, [canvas, low, high, *panel.inputs], [condition, output], "canny_generate"
        )
    return demo
