"""The shared inference core: `InferenceCore(pipeline).generate(make_request(...))`."""

from controlsprint.inference.request import (
    VIDEO_GUIDANCE,
    VIDEO_HINT_STRENGTH,
    Control,
    Request,
    make_request,
)

__all__ = ["VIDEO_GUIDANCE", "VIDEO_HINT_STRENGTH", "Control", "InferenceCore", "Request", "make_request"]


def __getattr__(name: str):
    if name == "InferenceCore":  # imports jax; keep `import controlsprint.inference` cheap
        from controlsprint.inference.core import InferenceCore

        return InferenceCore
    raise AttributeError(name)
