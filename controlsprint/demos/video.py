"""Video (Make-A-Video style): a hint image + a prompt -> a short clip that starts from the hint.

The model is the image UNet with temporal layers (a model folder's temporal/ part): the hint's latent
conditions every frame, and frame 0 is held on the hint while sampling unless the visitor frees it.
The clip reaches the browser as WebM (VP9): OpenCV, the only encoder the project ships, has no H.264,
its .mp4 (MPEG-4 Part 2) does not play in browsers, and gradio converts videos only with an ffmpeg
on PATH, which the project does not require. A filmstrip PNG shows every frame losslessly beside it.

A model without temporal layers still serves this tab (building a page never loads the model, so the
tab cannot know); generating then answers with a message saying a video model is needed.
Run it with `controlsprint demo video` or `python demos/video.py`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import uuid
import weakref
from pathlib import Path

import gradio as gr
import numpy as np

from controlsprint.demos import ui
from controlsprint.demos.core import SharedCore

TITLE = "Video"
INTRO = (
    "Upload a first frame (the hint) and say what moves. The model, its image UNet with temporal "
    "layers, makes a short clip that starts from the hint (**Show first frame** shows it at the "
    "model's size). Needs a model with temporal layers (a `temporal/` folder)."
)
EXAMPLE = "motion.png"  # the first frame of a synthetic motion clip
PROMPT = "a yellow circle moving to the right on a red background"  # that clip's caption
MIN_FRAMES, MAX_FRAMES, DEFAULT_FRAMES = 2, 16, 8
STRIP_COLUMNS = 8  # frames per filmstrip row: 16 frames make two rows, not one 2048-px-wide strip
KEPT_CLIPS = 16  # clip files kept on disk per app (gradio copies each to its cache once it is answered)


@dataclasses.dataclass(frozen=True)
class ClipSettings:
    """What a generate event takes after the hint image, in this order."""

    frames: int
    fps: float
    hold_first_frame: bool
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    seed: int


def clip_settings_of(
    frames, fps, hold_first_frame, prompt, negative_prompt, steps, guidance, seed
) -> ClipSettings:
    """`ClipSettings` from the raw values gradio passes (numbers may arrive as floats or None)."""
    return ClipSettings(
        frames=int(frames),
        fps=float(fps),
        hold_first_frame=bool(hold_first_frame),
        prompt=str(prompt or ""),
        negative_prompt=str(negative_prompt or ""),
        steps=int(steps),
        guidance=float(guidance),
        seed=int(seed or 0),
    )


def filmstrip(frames: np.ndarray, columns: int = STRIP_COLUMNS) -> np.ndarray:
    """Frames [F, H, W, 3] as one picture: rows of up to `columns` frames, left to right then down;
    the last row's empty cells white."""
    count, height, width, _ = frames.shape
    columns = min(columns, count)
    rows = -(-count // columns)
    cells = np.full((rows * columns, height, width, 3), 255, np.uint8)
    cells[:count] = frames
    grid = cells.reshape(rows, columns, height, width, 3)
    return np.ascontiguousarray(grid.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, 3))


class ClipFolder:
    """A private temporary folder for the clip files handed to gradio: each answer gets a file of its
    own name (gradio caches outputs by content hash and file name, so two answers never share one),
    only the newest `keep` stay, and the folder goes when the app does (or the process ends)."""

    def __init__(self, keep: int = KEPT_CLIPS):
        self._keep = keep
        self._folder: Path | None = None
        self._written: list[Path] = []
        self._lock = threading.Lock()

    def write(self, frames: np.ndarray, fps: float) -> Path:
        from controlsprint.clipio import save_clip

        with self._lock:
            if self._folder is None:  # made on first use: building a page writes nothing
                self._folder = Path(tempfile.mkdtemp(prefix="controlsprint-video-"))
                weakref.finalize(self, shutil.rmtree, self._folder, ignore_errors=True)
            path = save_clip(self._folder / f"clip-{uuid.uuid4().hex[:12]}.webm", frames, fps)
            self._written.append(path)
            while len(self._written) > self._keep:
                self._written.pop(0).unlink(missing_ok=True)
        return path


def video_core(shared: SharedCore, progress: gr.Progress):
    """The loaded core, checked to have temporal layers (telling the visitor when this request loads it)."""
    if not shared.loaded:
        progress(0.0, desc="loading the model (first request only)")
    core = shared.get()
    if not core.has_video:
        raise gr.Error(
            "the model has no temporal layers (no temporal/ folder), so it cannot make clips; "
            "start the demo with --model DIR naming a video model folder"
        )
    return core


def make_clip(core, settings: ClipSettings, hint: np.ndarray, size: tuple[int, int], progress) -> np.ndarray:
    """One clip [F, H, W, 3] uint8 at `size` starting from `hint`."""
    from controlsprint.inference import VIDEO_HINT_STRENGTH, make_request

    if not settings.prompt.strip():
        raise gr.Error("Prompt: empty; describe what happens in the clip")
    request = make_request(
        settings.prompt,
        settings.negative_prompt,
        frames=settings.frames,
        hint_image=hint,
        lock_first_frame=settings.hold_first_frame,
        hint_strength=VIDEO_HINT_STRENGTH,
        steps=settings.steps,
        guidance=settings.guidance,
        seed=settings.seed,
        height=size[0],
        width=size[1],
    )
    # By stage, as in every app (ui.generate says why the per-step hook is not used).
    progress(None, desc=f"denoising {settings.frames} frames: {settings.steps} steps at {size[1]}x{size[0]}")
    return core.generate(request)[0]


def create_demo(core) -> gr.Blocks:
    """The video app over `core` (an `InferenceCore` or a `SharedCore`)."""
    from controlsprint.conditions.base import resize_rgb
    from controlsprint.inference import VIDEO_GUIDANCE

    shared = SharedCore.of(core)
    clips = ClipFolder()

    def first_frame(core, hint_path):
        """The hint at the size the model works at (aspect kept, the model's native short side)."""
        hint = ui.read_image(hint_path, "Hint image")
        size = ui.working_size(core, hint.shape, 0)
        return resize_rgb(hint, size), size

    def show_first_frame(hint_path):
        return first_frame(shared.get(), hint_path)[0]

    def generate(
        hint_path, frames, fps, hold_first_frame, prompt, negative_prompt, steps, guidance, seed,
        progress=gr.Progress(),  # noqa: B008  (gradio injects the event's progress tracker here)
    ):  # fmt: skip
        settings = clip_settings_of(
            frames, fps, hold_first_frame, prompt, negative_prompt, steps, guidance, seed
        )
        core = video_core(shared, progress)
        hint, size = first_frame(core, hint_path)
        clip = make_clip(core, settings, hint, size, progress)
        return str(clips.write(clip, settings.fps)), filmstrip(clip)

    with ui.app_blocks(TITLE, INTRO) as demo:
        with gr.Row():
            with gr.Column():
                hint = ui.image_upload("Hint image", elem_id="video-input")
                with gr.Row():
                    frames = gr.Slider(
                        MIN_FRAMES, MAX_FRAMES, value=DEFAULT_FRAMES, step=1, label="Frames",
                        elem_id="video-frames",
                    )  # fmt: skip
                    fps = gr.Slider(1, 30, value=8, step=1, label="Frames per second (playback)")
                hold = gr.Checkbox(True, label="Keep the first frame exactly the hint")
                prompt = gr.Textbox(PROMPT, label="Prompt", lines=2, elem_id="video-prompt")
                with gr.Accordion("Generation settings", open=False, elem_id="video-settings"):
                    negative_prompt = gr.Textbox("", label="Negative prompt")
                    with gr.Row():
                        steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="video-steps")
                        guidance = gr.Slider(
                            0.0, 20.0, value=VIDEO_GUIDANCE, step=0.5, label="Guidance scale"
                        )
                    seed = gr.Number(0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed")
                with gr.Row():
                    show = gr.Button("Show first frame")
                    run = gr.Button("Generate clip", variant="primary", elem_id="video-generate")
            with gr.Column():
                condition = ui.result_image("First frame (the hint the model gets)")
                video = gr.Video(
                    label="Clip (WebM)", format="webm", autoplay=True, loop=True, interactive=False,
                    elem_id="video-output",
                )  # fmt: skip
                strip = ui.result_image("Frames", elem_id="video-filmstrip")
        ui.example_rows("video_example", [hint, prompt], [list(ui.example(EXAMPLE))])
        ui.on_preview(show, show_first_frame, [hint], [condition], "video_condition")
        inputs = [hint, frames, fps, hold, prompt, negative_prompt, steps, guidance, seed]
        ui.on_generate(run, generate, inputs, [video, strip], "video_generate")
    return demo
