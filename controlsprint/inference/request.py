"""What a caller asks the inference core for, validated into one-line `UserError`s."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from controlsprint.errors import UserError
from controlsprint.models.pipeline import DEFAULT_GUIDANCE
from controlsprint.schedulers import SCHEDULER_NAMES


@dataclasses.dataclass(frozen=True)
class Control:
    """One ControlNet's input: the condition image (HxWx3 uint8, already extracted) and its schedule.

    `scale` multiplies the ControlNet's residuals; it acts only for steps whose fraction of the run lies
    within [start, end] (as diffusers' control_guidance_start/end).
    """

    name: str
    image: np.ndarray
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0


# The hint strength the video CLI, demo and eval use: every frame starts from the hint noised 60 % of the
# way, so the embedded video model's clips keep their hint's layout and colours (from pure noise its free
# frames drift to whatever its image UNet draws; docs/video.md has the figures per strength).
VIDEO_HINT_STRENGTH = 0.6
# ... and their guidance scale (the video model's figures were measured at it; the image commands use
# the model's recorded scale, chosen for its ControlNets)
VIDEO_GUIDANCE = 5.0


@dataclasses.dataclass(frozen=True)
class Request:
    prompts: tuple[str, ...]
    negative_prompts: tuple[str, ...] = ("",)
    controls: tuple[Control, ...] = ()
    height: int | None = None  # default: the first condition's size, else the model's native size
    width: int | None = None
    steps: int = 20
    guidance: float = DEFAULT_GUIDANCE  # classifier-free guidance runs when > 1
    scheduler: str = "ddim"
    seed: int = 0
    num_images: int = 1  # per prompt
    init_image: np.ndarray | None = None  # img2img / inpaint source, HxWx3 uint8
    strength: float = 0.8  # how far to noise init_image (1 = from pure noise)
    mask: np.ndarray | None = None  # inpaint: white (>= 128) = repaint, black = keep
    guess_mode: bool = False
    latents: np.ndarray | None = None  # explicit starting noise [B, h, w, C] (tests, parity checks)
    # Video (needs a model with temporal layers): a clip of `frames` frames instead of an image, made to
    # start from `hint_image` (HxWx3 uint8) when given; `lock_first_frame` holds frame 0 on the hint.
    frames: int = 0
    hint_image: np.ndarray | None = None
    lock_first_frame: bool = True
    # Below 1, every frame starts from the hint's latent noised to this level (img2img with the hint on
    # every frame), so the clip keeps the hint's layout and colours; 1 starts from pure noise.
    hint_strength: float = 1.0

    @property
    def is_video(self) -> bool:
        return self.frames > 0

    @property
    def batch(self) -> int:
        return len(self.prompts) * self.num_images

    @property
    def mode(self) -> str:
        if self.mask is not None:
            return "inpaint"
        starts_from_hint = self.hint_image is not None and self.hint_strength < 1.0
        return "img2img" if self.init_image is not None or starts_from_hint else "txt2img"


def make_request(
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    **fields,
) -> Request:
    """Build and validate a `Request` from friendly arguments (single strings or lists)."""
    prompts = (prompt,) if isinstance(prompt, str) else tuple(prompt)
    negatives = (negative_prompt,) if isinstance(negative_prompt, str) else tuple(negative_prompt)
    fields["controls"] = tuple(fields.get("controls", ()))
    request = Request(prompts=prompts, negative_prompts=negatives, **fields)
    validate(request)
    return request


def _number(name: str, value, low: float, high: float = math.inf, *, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not (low <= value <= high) or value != value:
        kind = "a whole number" if integer else "a number"
        bound = f"between {low} and {high}" if high != math.inf else f">= {low}"
        raise UserError(f"{name}={value!r}: must be {kind} {bound}")


def validate(request: Request) -> None:
    if not request.prompts:
        raise UserError("no prompt given")
    if len(request.negative_prompts) not in (1, len(request.prompts)):
        raise UserError(
            f"{len(request.negative_prompts)} negative prompts for {len(request.prompts)} prompts"
        )
    _number("steps", request.steps, 1, 1000, integer=True)
    _number("guidance", request.guidance, 0.0, 100.0)
    _number("num_images", request.num_images, 1, 64, integer=True)
    _number("seed", request.seed, 0, 2**32 - 1, integer=True)
    _number("strength", request.strength, 0.0, 1.0)
    if request.scheduler not in SCHEDULER_NAMES:
        raise UserError(f"scheduler '{request.scheduler}': must be one of {', '.join(SCHEDULER_NAMES)}")
    for size_name in ("height", "width"):
        size = getattr(request, size_name)
        if size is not None:
            _number(size_name, size, 8, 4096, integer=True)
    names = [c.name for c in request.controls]
    if len(set(names)) != len(names):
        raise UserError(f"control {sorted(n for n in names if names.count(n) > 1)[0]} given twice")
    for control in request.controls:
        _number(f"scale for {control.name}", control.scale, 0.0, 10.0)
        _number(f"start for {control.name}", control.start, 0.0, 1.0)
        _number(f"end for {control.name}", control.end, 0.0, 1.0)
        if control.start >= control.end:
            raise UserError(f"control {control.name}: start {control.start} must be below end {control.end}")
        _check_image(f"condition image for {control.name}", control.image)
    if request.init_image is not None:
        _check_image("init image", request.init_image)
    _number("frames", request.frames, 0, 64, integer=True)
    _number("hint_strength", request.hint_strength, 0.0, 1.0)
    if request.hint_image is not None:
        if not request.is_video:
            raise UserError("a hint image is for video: give frames >= 1 too")
        _check_image("hint image", request.hint_image)
    if request.is_video and (request.controls or request.init_image is not None):
        raise UserError(
            "video generation takes a prompt and a hint image; ControlNets and init images are image-only"
        )
    if request.mask is not None:
        if request.init_image is None:
            raise UserError("a mask needs an init image (the picture to inpaint)")
        if request.mask.shape[:2] != request.init_image.shape[:2]:
            raise UserError(
                f"mask size {request.mask.shape[1]}x{request.mask.shape[0]} does not match the init image "
                f"size {request.init_image.shape[1]}x{request.init_image.shape[0]}"
            )


def _check_image(name: str, image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"{name}: expected an HxWx3 uint8 image")
