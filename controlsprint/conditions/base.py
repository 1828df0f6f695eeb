"""What every extractor shares: the result type, the sizing rule, input normalisation, lazy models.

Sizing rule (one rule for every extractor, so a condition lines up with the image it came from):
- `resolution=None`: the input size, each side rounded to the nearest multiple of 8 (at least 8);
- `resolution=N`: the input scaled, aspect kept, so its short side is N; then each side rounded to the
  nearest multiple of 8 (at least 8). Stable Diffusion's VAE works on 8x8 pixel blocks, so that is the
  granularity a condition image must have.
The image is resized (never cropped), area-averaged when shrinking and bicubic when enlarging.
"""

from __future__ import annotations

import abc
import numbers
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from controlsprint.conditions.options import OPTIONS, build_options
from controlsprint.errors import UserError

SIZE_MULTIPLE = 8


class ConditionResult:
    """An extractor's output: the condition image, the landmarks found, a notice.

    image:     HxWx3 uint8.
    landmarks: JSON-ready list for hands, pose and face (empty when nothing was found), None for the
               others. An extractor may pass a zero-argument function instead: the records are then
               built on first access, so a caller that wants only the image never pays for them
               (a face has 478 landmarks).
    notice:    one line worth telling the user (e.g. which SAM backend ran), or None.
    """

    __slots__ = ("image", "notice", "_landmarks", "_pending")

    def __init__(
        self,
        image: np.ndarray,
        landmarks: list[dict] | Callable[[], list[dict]] | None = None,
        notice: str | None = None,
    ):
        self.image = image
        self.notice = notice
        self._pending = landmarks if callable(landmarks) else None
        self._landmarks = None if callable(landmarks) else landmarks

    @property
    def landmarks(self) -> list[dict] | None:
        if self._pending is not None:
            self._landmarks, self._pending = self._pending(), None
        return self._landmarks

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.image.shape))
        count = "None" if self.landmarks is None else f"{len(self.landmarks)} found"
        return f"ConditionResult(image={shape} {self.image.dtype}, landmarks={count}, notice={self.notice!r})"

    # Pickled (e.g. back from a worker process) with its landmarks built: a pending function may not pickle.
    def __getstate__(self) -> tuple:
        return self.image, self.landmarks, self.notice

    def __setstate__(self, state: tuple) -> None:
        self.image, self._landmarks, self.notice = state
        self._pending = None


def round_to_multiple(value: float, multiple: int = SIZE_MULTIPLE) -> int:
    return max(multiple, int(value / multiple + 0.5) * multiple)


def condition_size(height: int, width: int, resolution: int | None) -> tuple[int, int]:
    """(height, width) of the condition for an input of `height` x `width` (see the module doc)."""
    if resolution is None:
        return round_to_multiple(height), round_to_multiple(width)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, numbers.Integral)
        or resolution < SIZE_MULTIPLE
    ):
        raise UserError(
            f"resolution {resolution!r}: expected an integer of at least {SIZE_MULTIPLE} (or None)"
        )
    scale = int(resolution) / min(height, width)
    return round_to_multiple(height * scale), round_to_multiple(width * scale)


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` resized to (height, width): area-averaged when shrinking, bicubic when enlarging."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    import cv2

    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label or binary map resized to (height, width) without inventing new values (nearest)."""
    height, width = size
    if labels.shape[:2] == (height, width):
        return labels
    import cv2

    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def _is_plain_rgb(image: np.ndarray) -> bool:
    return (
        image.ndim == 3
        and image.shape[2] == 3
        and image.dtype == np.uint8
        and image.flags.c_contiguous
        and image.size > 0
    )


class Extractor(abc.ABC):
    """Base of every extractor: `ext(image, resolution=...)` and `ext.extract(...)`.

    Subclasses set `name` (their options type is `OPTIONS[name]`, see options.py) and implement `_extract(rgb, size) -> ConditionResult`, where
    `rgb` is the normalised input and `size` the (height, width) of the condition to return. Heavy
    models are loaded on first use into attributes listed in `_lazy_attributes`; pickling drops them
    so an extractor can be sent to a worker process and load its own there.
    """

    name: ClassVar[str]
    _lazy_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any):
        self.options = build_options(OPTIONS[self.name], options, self.name)
        for attribute in self._lazy_attributes:
            setattr(self, attribute, None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    def __call__(self, image: Any, *, resolution: int | None = None) -> np.ndarray:
        return self.extract(image, resolution=resolution).image

    def extract(self, image: Any, *, resolution: int | None = None) -> ConditionResult:
        rgb = self._normalise(image)
        return self._extract(rgb, condition_size(rgb.shape[0], rgb.shape[1], resolution))

    @abc.abstractmethod
    def _extract(self, rgb: np.ndarray, size: tuple[int, int]) -> ConditionResult:
        """The condition (and landmarks) of normalised `rgb`, drawn at `size` = (height, width)."""

    @staticmethod
    def _normalise(image: Any) -> np.ndarray:
        from controlsprint.imageio import DEFAULT_MAX_PIXELS, array_to_rgb, load_image

        if isinstance(image, np.ndarray):
            if _is_plain_rgb(image):
                return image  # the common case: nothing to check, nothing to format
            return array_to_rgb(image, f"{image.shape} {image.dtype} array")
        # Pixels already in memory cannot be a decompression bomb; paths and bytes still get the limit.
        in_memory = type(image).__module__.startswith("PIL.")
        return load_image(image, max_pixels=None if in_memory else DEFAULT_MAX_PIXELS)

    def close(self) -> None:
        """Release loaded models now (they are loaded again on the next call)."""
        for attribute in self._lazy_attributes:
            model = getattr(self, attribute, None)
            if model is not None and hasattr(model, "close"):
                model.close()
            setattr(self, attribute, None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for attribute in self._lazy_attributes:
            state[attribute] = None
        return state
