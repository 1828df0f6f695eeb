"""Control with segmentation: photo -> segmentation map (editable) -> a new picture with the same regions.

The map comes from SAM when a SAM folder is configured ($CONTROLSPRINT_SAM_MODEL), else from the
offline graph segmenter. The visitor may paint over the map (or paint one from nothing) before
generating. Run it with `controlsprint demo sam` or `python demos/sam.py`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Segmentation (SAM)"
INTRO = (
    "Upload a photo and press **Segment**: each region gets a colour. Paint over the map to merge, "
    "split or invent regions (or paint a map on the empty canvas), then **Generate** a picture with "
    "those regions. Without a photo, the map's size sets the output's."
)
PROMPT = "a yellow hexagon above a brown circle on a purple background"


def _brush() -> gr.Brush:
    from controlsprint.data.synth.palette import SEGMENT_CLASS_COLOURS

    # The synthetic data's class colours (red circle, green square, ...; black: no region).
    colours = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in SEGMENT_CLASS_COLOURS.values()]
    return gr.Brush(colors=colours[1:] + colours[:1], color_mode="defaults")


def create_demo(core) -> gr.Blocks:
    """The segmentation app over `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    pool = ui.ExtractorPool()

    def segment(core, photo_path, short_side: int):
        photo = ui.read_image(photo_path, "Photo")
        size = ui.working_size(core, photo.shape, short_side)
        return pool.extract("segment", photo, size), size

    def show_segments(photo_path, short_side):
        result, _ = segment(shared.get(), photo_path, int(short_side or 0))
        return result.image, result.notice or ""

    def painted_map(core, canvas, photo_path, short_side: int) -> tuple[np.ndarray, tuple[int, int]]:
        """The condition: the canvas's map if there is one (resized to the photo's working size), else
        the photo's segmentation."""
        from controlsprint.conditions.base import resize_labels

        if not (canvas and (canvas.get("background") is not None or canvas.get("layers"))):
            if not photo_path:
                raise gr.Error("Photo: no image given; upload a photo or paint a segmentation map")
            result, size = segment(core, photo_path, short_side)
            return result.image, size
        segmentation = ui.canvas_image(canvas, "Segmentation map", background=0)  # unpainted: no region
        shape = ui.read_image(photo_path, "Photo").shape if photo_path else segmentation.shape
        size = ui.working_size(core, shape, short_side)
        return resize_labels(segmentation, size), size

    def generate(
        photo_path, canvas, prompt, negative_prompt, steps, guidance, control_scale, seed, short_side,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        settings = ui.settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side)
        core = ui.core_for(shared, "segment", progress)
        condition, size = painted_map(core, canvas, photo_path, settings.short_side)
        return condition, ui.generate(core, settings, {"segment": condition}, size, progress)

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            with gr.Column():
                photo = ui.image_upload("Photo", elem_id="sam-input")
                panel = ui.SettingsPanel("sam", PROMPT, guidance=shared.guidance)
                with gr.Row():
                    show = gr.Button("Segment")
                    run = gr.Button("Generate", variant="primary", elem_id="sam-generate")
            with gr.Column():
                canvas = ui.image_canvas(
                    "Segmentation map (paint to edit)", brush=_brush(), sources=("upload", "clipboard")
                )
                backend = gr.Markdown()
                output = ui.result_image("Generated", elem_id="sam-output")
        ui.example_rows("sam_example", [photo, panel.prompt], [list(ui.example("scene.png"))])
        ui.on_preview(show, show_segments, [photo, panel.short_side], [canvas, backend], "sam_segment")
        ui.on_generate(run, generate, [photo, canvas, *panel.inputs], [canvas, output], "sam_generate")
    return demo
