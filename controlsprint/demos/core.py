"""`SharedCore`: the one inference core behind every app of a process, loaded when first needed.

Building the Blocks of an app must not load a model (a Space imports `app.py` before anyone asks for
an image, and the suite builds five apps), so apps hold a `SharedCore` and call `.get()` inside their
event handlers. The first call loads the model; concurrent first calls wait for that one load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from controlsprint.errors import UserError
from controlsprint.models.pipeline import DEFAULT_GUIDANCE, model_guidance


class SharedCore:
    """An `InferenceCore` made by `loader()` on first use, then shared by every caller. `guidance` is
    the model's CFG scale, known before the load (read from its controlsprint.json), so the apps' sliders
    can start at it."""

    def __init__(self, loader: Callable[[], Any], guidance: float = DEFAULT_GUIDANCE):
        self._loader = loader
        self.guidance = guidance
        self._core = None
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model: str | None = None, controlnets: Mapping[str, str] | None = None) -> SharedCore:
        """The core for a model folder (None: $CONTROLSPRINT_MODEL, else the embedded default model)."""

        def load():
            from controlsprint.inference.loading import load_core

            return load_core(model, controlnets)

        return cls(load, model_guidance(model))

    @classmethod
    def of(cls, core: Any) -> SharedCore:
        """`core` itself if it is a SharedCore, else a SharedCore around a loaded `InferenceCore`."""
        if isinstance(core, SharedCore):
            return core
        shared = cls(lambda: core, core.default_guidance)
        shared._core = core
        return shared

    @property
    def loaded(self) -> bool:
        return self._core is not None

    def get(self):
        """The loaded core (loading it now if nobody has yet)."""
        if self._core is None:
            with self._lock:
                if self._core is None:
                    self._core = self._loader()
        return self._core

    def require(self, controlnet: str):
        """The loaded core, checked to have a ControlNet called `controlnet`."""
        core = self.get()
        if controlnet not in core.controlnet_names:
            have = ", ".join(core.controlnet_names) or "none"
            raise UserError(
                f"the model has no '{controlnet}' ControlNet (it has: {have}); "
                f"start the demo with --controlnet {controlnet}=DIR"
            )
        return core
