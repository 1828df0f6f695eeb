"""What every app shares: inputs that turn bad uploads into clear messages, the generation settings,
condition extraction, one generate call with progress, examples.

Errors a visitor can cause (no image, a huge image, a file that is no image, a model without the needed
ControlNet) become `gr.Error` with one line naming the input; they never crash the server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from controlsprint.demos import MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from controlsprint.errors import UserError

EXAMPLES_DIR = Path(__file__).resolve().with_name("examples")
GENERATE_QUEUE = "generate"  # concurrency id of every generate event: the core runs one at a time anyway
PREVIEW_CONCURRENCY = 2  # condition previews at once per event (extractors are cheap; one lock each)


def user_errors(handler: Callable) -> Callable:
    """Let `handler` raise `UserError` (from the library) and show it to the visitor as a `gr.Error`."""

    @functools.wraps(handler)  # keeps the signature: gradio finds the gr.Progress parameter through it
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except UserError as err:
            raise gr.Error(str(err)) from None

    return wrapped


@contextlib.contextmanager
def app_blocks(title: str, intro: str):
    """The Blocks of one app, headed by its title and a short how-to."""
    with gr.Blocks(title=title, analytics_enabled=False) as blocks:
        gr.Markdown(f"### {title}\n\n{intro}")
        yield blocks


def on_preview(button: gr.Button, handler: Callable, inputs: list, outputs: list, api_name: str) -> None:
    """Wire a "show condition" button: quick, several may run at once."""
    button.click(
        user_errors(handler), inputs, outputs, api_name=api_name, concurrency_limit=PREVIEW_CONCURRENCY
    )


def on_generate(button: gr.Button, handler: Callable, inputs: list, outputs: list, api_name: str) -> None:
    """Wire a generate button: every app's generations share one queue slot, as they share one core."""
    button.click(
        user_errors(handler),
        inputs,
        outputs,
        api_name=api_name,
        concurrency_id=GENERATE_QUEUE,
        concurrency_limit=1,
    )


def example_rows(api_name: str, inputs: list, rows: list[list]) -> gr.Examples:
    """Clickable examples (bundled images; never run ahead of time, so startup loads no model)."""
    return gr.Examples(rows, inputs, api_name=api_name, cache_examples=False)


# -- uploads ------------------------------------------------------------------------------------------


def _check_upload(path: str, label: str, name: str) -> None:
    """Reject a file that is no image or is too large, from its header alone (before anything decodes it)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            width, height = image.size
    except UnidentifiedImageError:
        raise gr.Error(f"{label}: {name} is not an image (no known image format)") from None
    except Image.DecompressionBombError:
        width, height = MAX_IMAGE_SIDE + 1, MAX_IMAGE_SIDE + 1  # Pillow refused it for its size: too large
    except (OSError, SyntaxError, ValueError) as err:
        raise gr.Error(f"{label}: cannot read {name} ({err})") from None
    if width * height > MAX_IMAGE_PIXELS:
        raise gr.Error(
            f"{label}: {name} is {width}x{height} pixels, above this demo's limit of "
            f"{MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE}; upload a smaller image"
        )


def _file_name(file: Any) -> str:
    return Path(getattr(file, "orig_name", None) or getattr(file, "path", None) or "the image").name


# The upload checks below wrap the component instance's own `preprocess` rather than subclassing it:
# gradio's component metaclass writes a `.pyi` stub next to any module that subclasses a component.


def image_upload(label: str, **kwargs) -> gr.Image:
    """A `gr.Image` whose uploads are checked (an image, not too large) before use; gives a file path,
    decoded later by `read_image` (which applies EXIF orientation, transparency, 16-bit...)."""
    kwargs.setdefault("sources", ("upload", "clipboard"))
    component = gr.Image(label=label, type="filepath", image_mode=None, format="png", **kwargs)
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and payload.path:
            _check_upload(payload.path, label, _file_name(payload))
        return preprocess(payload)

    component.preprocess = checked
    return component


def image_canvas(label: str, **kwargs) -> gr.ImageEditor:
    """A `gr.ImageEditor` (upload, draw, paint) whose pictures are checked like `image_upload`'s;
    gives RGBA arrays."""
    component = gr.ImageEditor(label=label, type="numpy", image_mode="RGBA", format="png", **kwargs)
    preprocess = component.preprocess

    def checked(payload):
        if payload is not None and payload.id is None:  # files from API clients (the browser sends blobs)
            for file in (payload.background, *payload.layers, payload.composite):
                if file is not None:
                    _check_upload(file.path, label, _file_name(file))
        try:
            return preprocess(payload)
        except (OSError, SyntaxError, ValueError) as err:
            raise gr.Error(f"{label}: the image is truncated or corrupt ({err})") from None

    component.preprocess = checked
    return unique_outputs(component)  # apps also show results in a canvas (the editable segmentation)


def _unique_png(value: Any) -> Any:
    """Arrays (also inside an editor value) as PIL images carrying a one-off PNG text chunk.

    Gradio caches each output under the hash of its bytes and rewrites that file in place, so two
    requests answered with the same picture at the same moment (same photo and seed) could each read
    the other's half-written file. A request id in the PNG makes every answer's bytes its own.
    """
    from PIL import Image

    if isinstance(value, np.ndarray):
        image = Image.fromarray(value)
        image.info["controlsprint-response"] = uuid.uuid4().hex
        return image
    if isinstance(value, dict):
        return {
            key: [_unique_png(v) for v in item] if isinstance(item, list) else _unique_png(item)
            for key, item in value.items()
        }
    return value


def unique_outputs(component):
    """`component` whose image outputs are made unique by `_unique_png` (on this instance only)."""
    postprocess = component.postprocess
    component.postprocess = lambda value: postprocess(_unique_png(value))
    return component


def result_image(label: str, **kwargs) -> gr.Image:
    """An output image, sent as PNG: lossless, so what the model made is what the visitor gets."""
    return unique_outputs(gr.Image(label=label, type="numpy", format="png", interactive=False, **kwargs))


def read_image(path: str | None, label: str) -> np.ndarray:
    """The uploaded image at `path` (from `image_upload`) as HxWx3 uint8 RGB."""
    from controlsprint.imageio import load_image

    if not path:
        raise gr.Error(f"{label}: no image given; upload one (or pick an example)")
    try:
        return load_image(path, max_pixels=MAX_IMAGE_PIXELS)
    except UserError as err:  # the message names the server's temporary path: show the file name instead
        raise gr.Error(str(err).replace(str(path), f"{label} {Path(path).name}")) from None


def flatten(rgba: np.ndarray, background: int) -> np.ndarray:
    """An HxWx4 (or HxWx3) uint8 image composited on a grey level (255: photos, 0: condition maps)."""
    if rgba.ndim == 3 and rgba.shape[2] == 3:
        return np.ascontiguousarray(rgba)
    alpha = rgba[..., 3:4].astype(np.uint16)
    mixed = (rgba[..., :3].astype(np.uint16) * alpha + background * (255 - alpha) + 127) // 255
    return mixed.astype(np.uint8)


def canvas_image(value: Mapping | None, label: str, *, background: int = 255) -> np.ndarray:
    """What an `image_canvas` shows (its composite, else its background) as HxWx3 uint8."""
    if value:
        for key in ("composite", "background"):
            if value.get(key) is not None and value[key].size:
                return flatten(value[key], background)
    raise gr.Error(f"{label}: no image given; upload one, draw one, or pick an example")


def canvas_mask(value: Mapping | None, shape: tuple[int, ...]) -> np.ndarray:
    """Where anything is painted on an `image_canvas`'s layers: HxW bool at `shape`'s height and width."""
    from controlsprint.conditions.base import resize_labels

    painted = np.zeros(shape[:2], bool)
    for layer in (value or {}).get("layers") or ():
        if layer is None or not layer.size:
            continue
        alpha = (layer[..., 3] if layer.ndim == 3 and layer.shape[2] == 4 else layer.max(axis=-1)) > 0
        painted |= resize_labels(alpha.astype(np.uint8), shape[:2]) > 0
    return painted


def example(name: str) -> tuple[str, str]:
    """(path, caption) of a bundled example image (controlsprint/demos/examples, made by
    demos/make_examples.py); the caption is the prompt that fits it."""
    import json

    captions = json.loads((EXAMPLES_DIR / "examples.json").read_text())
    return str(EXAMPLES_DIR / name), captions[name]


# -- generation -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every generate event takes after its own inputs, in this order (see `SettingsPanel`)."""

    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    control_scale: float
    seed: int
    short_side: int  # output size: the short side in pixels, 0 for the model's native size


class SettingsPanel:
    """The prompt box plus an accordion of generation settings; `.inputs` in `Settings` field order."""

    def __init__(self, app: str, prompt: str, *, guidance: float, negative_prompt: str = ""):
        self.prompt = gr.Textbox(prompt, label="Prompt", lines=2, elem_id=f"{app}-prompt")
        with gr.Accordion("Generation settings", open=False, elem_id=f"{app}-settings"):
            self.negative_prompt = gr.Textbox(negative_prompt, label="Negative prompt")
            with gr.Row():
                self.steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id=f"{app}-steps")
                self.guidance = gr.Slider(0.0, 20.0, value=guidance, step=0.5, label="Guidance scale")
            with gr.Row():
                self.control_scale = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Control strength")
                self.seed = gr.Number(0, precision=0, minimum=0, maximum=2**32 - 1, label="Seed")
            self.short_side = gr.Slider(
                0, 1024, value=0, step=64, label="Output short side in pixels (0: the model's native size)"
            )

    @property
    def inputs(self) -> list:
        return [getattr(self, field.name) for field in dataclasses.fields(Settings)]


def settings_of(prompt, negative_prompt, steps, guidance, control_scale, seed, short_side) -> Settings:
    """`Settings` from the raw values gradio passes (numbers may arrive as floats or None)."""
    return Settings(
        prompt=str(prompt or ""),
        negative_prompt=str(negative_prompt or ""),
        steps=int(steps),
        guidance=float(guidance),
        control_scale=float(control_scale),
        seed=int(seed or 0),
        short_side=int(short_side or 0),
    )


def working_size(core, shape: tuple[int, ...], short_side: int) -> tuple[int, int]:
    """(height, width) the model runs at for a picture of `shape`: aspect kept, short side `short_side`
    (or the model's native size), each side rounded down to what the UNet can process."""
    from controlsprint.conditions.base import condition_size

    height, width = condition_size(shape[0], shape[1], short_side or core.native_size)
    multiple = core.size_multiple
    return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)


def core_for(shared, controlnet: str, progress: gr.Progress):
    """The loaded core (with ControlNet `controlnet`), telling the visitor when this request loads it."""
    if not shared.loaded:
        progress(0.0, desc="loading the model (first request only)")
    return shared.require(controlnet)


def generate(
    core,
    settings: Settings,
    conditions: Mapping[str, np.ndarray],
    size: tuple[int, int],
    progress: gr.Progress,
    **request_fields: Any,
) -> np.ndarray:
    """One image (HxWx3 uint8, `size`) from the core, every condition at the settings' control strength."""
    from controlsprint.inference import Control, make_request

    if not settings.prompt.strip():
        raise gr.Error("Prompt: empty; describe the picture you want")
    request = make_request(
        settings.prompt,
        settings.negative_prompt,
        controls=[Control(name, image, settings.control_scale) for name, image in conditions.items()],
        steps=settings.steps,
        guidance=settings.guidance,
        seed=settings.seed,
        height=size[0],
        width=size[1],
        **request_fields,
    )
    # Progress by stage, not by step: the core's per-step hook is a host callback, and JAX never
    # stores programs with host callbacks in the persistent compilation cache, so every server start
    # would compile each program again (measured on the tiny model: 16 s each start instead of 5 s).
    progress(None, desc=f"denoising: {settings.steps} steps at {size[1]}x{size[0]}")
    return core.generate(request)[0]


class ExtractorPool:
    """Extractors kept between requests (MediaPipe graphs are slow to build), one lock each: a graph
    must not run in two threads at once. Keyed by (name, options); the oldest goes beyond `size`."""

    def __init__(self, size: int = 8):
        self._size = size
        self._entries: dict[tuple, tuple[Any, threading.Lock]] = {}
        self._lock = threading.Lock()

    def extract(self, name: str, image: np.ndarray, size: tuple[int, int], **options: Any):
        """The `ConditionResult` of extractor `name` on `image`, its picture resized to exactly `size`."""
        from controlsprint.conditions import get_extractor
        from controlsprint.conditions.base import resize_labels, resize_rgb

        key = (name, tuple(sorted(options.items())))
        with self._lock:
            if key not in self._entries:
                if len(self._entries) >= self._size:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = (get_extractor(name, **options), threading.Lock())
            extractor, lock = self._entries[key]
        with lock:
            result = extractor.extract(image, resolution=min(size))
        # The extractor rounds sides to 8 px, the model to its own block size: match the model exactly.
        # Maps (edges, regions, skeletons) keep their exact colours; only the gray picture is resampled.
        resize = resize_rgb if name == "gray" else resize_labels
        result.image = resize(result.image, size)
        return result
