"""Interior design: a room photo -> its segmentation -> repaint only the region the visitor paints.

The segmentation ControlNet keeps the room's layout; inpainting repaints the masked region by the
prompt. The result has the uploaded photo's size, and every pixel outside the painted mask is the
photo's own. Run it with `controlsprint demo interior` or `python demos/interior.py`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Interior design"
INTRO = (
    "Upload a room photo and paint over what to redesign (the sofa, a wall, the floor). The model "
    "repaints only that, following the room's segmentation (**Show segmentation**) and your prompt; "
    "the rest of the photo stays exactly as it was."
)
PROMPT = "a living room with a green velvet sofa, a window and a wooden floor"


def create_demo(core) -> gr.Blocks:
    """The interior-design app over `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    pool = ui.ExtractorPool()

    def segment(core, room: np.ndarray, short_side: int):
        size = ui.working_size(core, room.shape, short_side)
        return pool.extract("segment", room, size).image, size

    def show_segments(canvas, short_side):
        room = ui.canvas_image(canvas, "Room photo")
        return segment(shared.get(), room, int(short_side or 0))[0]

    def generate(
        canvas, strength, prompt, negative_prompt, steps, guidance, control_scale, seed, short_side,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        from controlsprint.conditions.base import resize_labels, resize_rgb

        settings = ui.settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side)
        room = ui.canvas_image({"background": (canvas or {}).get("background")}, "Room photo")
        painted = ui.canvas_mask(canvas, room.shape)
        if not painted.any():
            raise gr.Error("Room photo: nothing painted; paint over the region to redesign first")
        core = ui.core_for(shared, "segment", progress)
        condition, size = segment(core, room, settings.short_side)
        mask = resize_labels(painted.astype(np.uint8) * 255, size)
        image = ui.generate(
            core,
            settings,
            {"segment": condition},
            size,
            progress,
            init_image=resize_rgb(room, size),
            mask=mask,
            strength=float(strength),
        )
        # Back at the photo's own size, only the painted pixels change.
        redesigned = np.where(painted[..., None], resize_rgb(image, room.shape[:2]), room)
        return condition, redesigned

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            with gr.Column():
                canvas = ui.image_canvas(
                    "Room photo (paint over what to redesign)",
                    elem_id="interior-input",
                    brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                    sources=("upload", "webcam", "clipboard"),
                )
                strength = gr.Slider(0.3, 1.0, value=1.0, step=0.05, label="Repaint strength")
                panel = ui.SettingsPanel("interior", PROMPT, guidance=shared.guidance)
                with gr.Row():
                    show = gr.Button("Show segmentation")
                    run = gr.Button("Redesign", variant="primary", elem_id="interior-generate")
            with gr.Column():
                condition = ui.result_image("Segmentation (the condition)")
                output = ui.result_image("Redesigned room", elem_id="interior-output")
        path, _ = ui.example("room.png")
        ui.example_rows("interior_example", [canvas, panel.prompt], [[path, PROMPT]])
        ui.on_preview(show, show_segments, [canvas, panel.short_side], [condition], "interior_segment")
        inputs = [canvas, strength, *panel.inputs]
        ui.on_generate(run, generate, inputs, [condition, output], "interior_generate")
    return demo
