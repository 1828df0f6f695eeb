"""Condition extractors: turn a photo into the image a ControlNet is conditioned on.

    from controlsprint.conditions import get_extractor, extractor_names
    canny = get_extractor("canny", low_threshold=100, high_threshold=200)
    condition = canny(image, resolution=512)          # HxWx3 uint8
    result = get_extractor("hands").extract(image)    # ConditionResult(image, landmarks, notice)

One module per extractor (`canny`, `segment`, `hands`, `pose`, `face`, `gray`). The registry below is
immutable and maps each name to a factory that imports its module only when used, so importing this
package costs nothing. Extractors load their models (MediaPipe graphs, SAM) on first call and keep
them for the life of the instance; build one extractor per process or thread (MediaPipe graphs are
not thread-safe), for example inside each worker of a process pool. See docs/conditions.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from controlsprint.errors import UserError

if TYPE_CHECKING:
    from controlsprint.conditions.base import ConditionResult, Extractor, condition_size


@dataclass(frozen=True)
class ExtractorFactory:
    """Builds one extractor; its class is imported on first use."""

    module: str
    class_name: str
    has_landmarks: bool = False  # whether ConditionResult.landmarks carries records

    def load(self) -> type[Extractor]:
        return getattr(importlib.import_module(self.module), self.class_name)

    def __call__(self, **options: Any) -> Extractor:
        return self.load()(**options)


EXTRACTORS: Mapping[str, ExtractorFactory] = MappingProxyType(
    {
        "canny": ExtractorFactory("controlsprint.conditions.canny", "CannyExtractor"),
        "segment": ExtractorFactory("controlsprint.conditions.segment", "SegmentExtractor"),
        "hands": ExtractorFactory("controlsprint.conditions.hands", "HandsExtractor", has_landmarks=True),
        "pose": ExtractorFactory("controlsprint.conditions.pose", "PoseExtractor", has_landmarks=True),
        "face": ExtractorFactory("controlsprint.conditions.face", "FaceExtractor", has_landmarks=True),
        "gray": ExtractorFactory("controlsprint.conditions.gray", "GrayExtractor"),
    }
)


def extractor_names() -> tuple[str, ...]:
    """The registered extractor names, in the registry's order."""
    return tuple(EXTRACTORS)


def get_extractor(name: str, **options: Any) -> Extractor:
    """A new extractor `name` with keyword `options`; unknown names, options or bad values are UserErrors."""
    factory = EXTRACTORS.get(name)
    if factory is None:
        raise UserError(f"unknown extractor '{name}'; known: {', '.join(EXTRACTORS)}")
    return factory(**options)


_BASE_EXPORTS = ("ConditionResult", "Extractor", "condition_size")


def __getattr__(name: str) -> Any:
    # The result type and base class live with numpy in base.py; importing them lazily keeps
    # `import controlsprint.conditions` (and so `controlsprint --help`) free of numpy.
    if name in _BASE_EXPORTS:
        from controlsprint.conditions import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXTRACTORS",
    "ConditionResult",
    "Extractor",
    "ExtractorFactory",
    "condition_size",
    "extractor_names",
    "get_extractor",
]
