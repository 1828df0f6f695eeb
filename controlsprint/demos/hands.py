"""Hands control: a photo (or a webcam shot) -> MediaPipe hand skeletons -> a new picture, same hands.

Run it with `controlsprint demo hands` or `python demos/hands.py`.
"""

from __future__ import annotations

import gradio as gr

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Hands"
INTRO = (
    "Upload a photo with hands or take one with the webcam. MediaPipe finds the hands and draws their "
    "skeletons (**Show skeleton**); the model paints new hands in the same poses."
)
PROMPT = "a light-skinned left hand making a rock sign, on a white and cyan gradient background"


def create_demo(core) -> gr.Blocks:
    """The hands app over `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    pool = ui.ExtractorPool()

    def skeleton(core, photo_path, confidence: float, short_side: int):
        photo = ui.read_image(photo_path, "Photo")
        size = ui.working_size(core, photo.shape, short_side)
        result = pool.extract("hands", photo, size, min_confidence=float(confidence))
        return result.image, len(result.landmarks), size

    def show_skeleton(photo_path, confidence, short_side):
        image, found, _ = skeleton(shared.get(), photo_path, confidence, int(short_side or 0))
        return (
            image,
            f"{found} hand(s) found" if found else "No hand found: try a lower detection confidence.",
        )

    def generate(
        photo_path, confidence, prompt, negative_prompt, steps, guidance, control_scale, seed, short_side,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        settings = ui.settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side)
        core = ui.core_for(shared, "hands", progress)
        condition, found, size = skeleton(core, photo_path, confidence, settings.short_side)
        if not found:
            raise gr.Error(f"Photo: no hand found at detection confidence {confidence}; try a lower one")
        return condition, ui.generate(core, settings, {"hands": condition}, size, progress)

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            with gr.Column():
                photo = ui.image_upload(
                    "Photo", sources=("upload", "webcam", "clipboard"), elem_id="hands-input"
                )
                confidence = gr.Slider(0.05, 1.0, value=0.5, step=0.05, label="Detection confidence")
                panel = ui.SettingsPanel("hands", PROMPT, guidance=shared.guidance)
                with gr.Row():
                    show = gr.Button("Show skeleton")
                    run = gr.Button("Generate", variant="primary", elem_id="hands-generate")
            with gr.Column():
                condition = ui.result_image("Hand skeletons (the condition)")
                found = gr.Markdown()
                output = ui.result_image("Generated", elem_id="hands-output")
        ui.example_rows("hands_example", [photo, panel.prompt], [list(ui.example("hands.png"))])
        inputs = [photo, confidence]
        ui.on_preview(show, show_skeleton, [*inputs, panel.short_side], [condition, found], "hands_condition")
        ui.on_generate(run, generate, [*inputs, *panel.inputs], [condition, output], "hands_generate")
    return demo
