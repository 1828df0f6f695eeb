"""The options of every extractor: frozen dataclasses, checked by name, type and range.

`get_extractor(name, **options)` builds the extractor's options dataclass from keyword arguments: an
unknown name, a value of the wrong type or out of range is a `UserError`. Each field's `help` metadata
becomes the matching `controlsprint extract` flag (`low_threshold` -> `--low-threshold`). This module
imports nothing heavy, so the CLI can build its flags while `controlsprint --help` stays instant.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from controlsprint.errors import UserError

SAM_MODEL_ENV = "CONTROLSPRINT_SAM_MODEL"


def option(default: Any, help: str) -> Any:  # noqa: A002  (mirrors argparse's keyword)
    return dataclasses.field(default=default, metadata={"help": help})


def check_range(extractor: str, key: str, value: float | None, low: float, high: float | None = None) -> None:
    if value is None:
        return
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise UserError(f"{extractor}: option {key}={value!r} must be {bound}")


def _is_bool(value: Any) -> bool:
    # numpy's bool_ is no `bool` subclass; recognise it without importing numpy
    return isinstance(value, bool) or type(value).__name__ == "bool_"


def _accepts(value: Any, kind: Any) -> bool:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_accepts(value, arg) for arg in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is bool:
        return _is_bool(value)
    if kind is int:
        return isinstance(value, numbers.Integral) and not _is_bool(value)
    if kind is float:
        return isinstance(value, numbers.Real) and not _is_bool(value)
    return isinstance(value, kind)


def _type_name(kind: Any) -> str:
    args = typing.get_args(kind)
    if args:
        return " or ".join("None" if a is type(None) else a.__name__ for a in args)
    return kind.__name__


def _coerce(value: Any, kind: Any) -> Any:
    # numpy scalars (and ints given for floats) become the declared plain type: options print and hash cleanly
    if value is None:
        return None
    target = next(a for a in (typing.get_args(kind) or (kind,)) if a is not type(None))
    return target(value) if target in (int, float, bool) else value


def option_types(options_type: type) -> dict[str, Any]:
    """Field name -> declared type of an options dataclass."""
    return typing.get_type_hints(options_type)


def build_options(options_type: type, given: Mapping[str, Any], extractor: str) -> Any:
    """Check keyword `given` for `extractor` by name and type, then construct `options_type`."""
    names = [f.name for f in dataclasses.fields(options_type)]
    hints = option_types(options_type)
    values = {}
    for key, value in given.items():
        if key not in hints:
            close = difflib.get_close_matches(key, names, n=1)
            hint = (
                f"; did you mean '{close[0]}'?" if close else f"; known options: {', '.join(names) or 'none'}"
            )
            raise UserError(f"{extractor}: unknown option '{key}'{hint}")
        if not _accepts(value, hints[key]):
            raise UserError(f"{extractor}: option {key}={value!r} must be {_type_name(hints[key])}")
        values[key] = _coerce(value, hints[key])
    return options_type(**values)


@dataclass(frozen=True)
class NoOptions:
    """For extractors without options (gray)."""


@dataclass(frozen=True)
class CannyOptions:
    low_threshold: int = option(100, "Canny hysteresis low threshold (gradient magnitude, >= 0)")
    high_threshold: int = option(200, "Canny hysteresis high threshold (>= low threshold)")
    blur: int = option(0, "Gaussian blur kernel size before detection: 0 for none, else odd (3, 5, ...)")
    detect_resolution: int | None = option(
        None,
        "run detection at this short side, then resize (nearest) to the output size; default: output size",
    )

    def __post_init__(self):
        check_range("canny", "low_threshold", self.low_threshold, 0)
        check_range("canny", "high_threshold", self.high_threshold, 0)
        if self.high_threshold < self.low_threshold:
            raise UserError(
                f"canny: high_threshold {self.high_threshold} is below low_threshold {self.low_threshold}"
            )
        if self.blur != 0 and (self.blur < 3 or self.blur % 2 == 0):
            raise UserError(
                f"canny: option blur={self.blur} must be 0 (no blur) or an odd size of at least 3"
            )
        check_range("canny", "detect_resolution", self.detect_resolution, 8)


@dataclass(frozen=True)
class SegmentOptions:
    sam_model: str | os.PathLike | None = option(
        None,
        f"local transformers SAM folder (safetensors); default: ${SAM_MODEL_ENV}, else the classical backend",
    )
    detect_resolution: int | None = option(
        None,
        "run detection at this short side, then resize (nearest) to the output size; default: output size",
    )
    min_region: float = option(0.002, "smallest region kept, as a fraction of the image area")
    scale: float = option(
        400.0, "classical backend: graph segmentation scale k (larger gives larger regions)"
    )
    sigma: float = option(0.8, "classical backend: Gaussian smoothing before graph segmentation")
    points_per_side: int = option(32, "SAM: prompt grid points per side (points_per_side^2 prompts)")
    points_per_batch: int = option(64, "SAM: prompts decoded at once (memory vs speed)")
    pred_iou_thresh: float = option(0.88, "SAM: keep masks whose predicted IoU is above this")
    stability_score_thresh: float = option(
        0.95, "SAM: keep masks at least this stable under threshold shifts"
    )
    nms_thresh: float = option(0.7, "SAM: box IoU above which the lower-scored of two masks is dropped")

    def __post_init__(self):
        if self.sam_model is not None:  # a Path from Python code becomes the plain string the CLI gives
            object.__setattr__(self, "sam_model", os.fspath(self.sam_model))
        check_range("segment", "detect_resolution", self.detect_resolution, 8)
        check_range("segment", "min_region", self.min_region, 0.0, 1.0)
        check_range("segment", "scale", self.scale, 0.0)
        check_range("segment", "sigma", self.sigma, 0.0)
        check_range("segment", "points_per_side", self.points_per_side, 1, 256)
        check_range("segment", "points_per_batch", self.points_per_batch, 1)
        for key in ("pred_iou_thresh", "stability_score_thresh", "nms_thresh"):
            check_range("segment", key, getattr(self, key), 0.0, 1.0)


@dataclass(frozen=True)
class HandsOptions:
    max_hands: int = option(2, "most hands to detect per image")
    min_confidence: float = option(0.5, "minimum detection confidence, 0..1")
    model_complexity: int = option(1, "0: lite landmark model, 1: full (both ship with mediapipe)")
    mirrored: bool = option(False, "input is mirrored (selfie camera): keep MediaPipe's handedness labels")

    def __post_init__(self):
        check_range("hands", "max_hands", self.max_hands, 1, 16)
        check_range("hands", "min_confidence", self.min_confidence, 0.0, 1.0)
        check_range("hands", "model_complexity", self.model_complexity, 0, 1)


@dataclass(frozen=True)
class PoseOptions:
    min_confidence: float = option(0.5, "minimum detection confidence, 0..1")
    min_visibility: float = option(0.5, "draw only keypoints at least this visible, 0..1")

    def __post_init__(self):
        check_range("pose", "min_confidence", self.min_confidence, 0.0, 1.0)
        check_range("pose", "min_visibility", self.min_visibility, 0.0, 1.0)


@dataclass(frozen=True)
class FaceOptions:
    max_faces: int = option(4, "most faces to detect per image")
    min_confidence: float = option(0.5, "minimum detection confidence, 0..1")
    refine_landmarks: bool = option(True, "also locate the irises (478 landmarks instead of 468)")

    def __post_init__(self):
        check_range("face", "max_faces", self.max_faces, 1, 32)
        check_range("face", "min_confidence", self.min_confidence, 0.0, 1.0)


OPTIONS: Mapping[str, type] = MappingProxyType(
    {
        "canny": CannyOptions,
        "segment": SegmentOptions,
        "hands": HandsOptions,
        "pose": PoseOptions,
        "face": FaceOptions,
        "gray": NoOptions,
    }
)
