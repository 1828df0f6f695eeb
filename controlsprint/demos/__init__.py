"""Gradio demos: one small app per ControlNet use, and a suite that mounts them all as tabs.

Every app module (`canny`, `sam`, `hands`, `interior`, `colorize`, `video`) exposes
`create_demo(core) -> gr.Blocks`; `suite.create_demo(core)` mounts them all over the same core, so the
model loads once.
`core` is an `InferenceCore` or a `SharedCore` (loads the model on the first request). Shared pieces
(inputs that turn bad uploads into clear messages, the generation settings, progress) live in `ui.py`;
launching (queue, upload limits, the URL line, Ctrl-C) in `launch.py`. See docs/demos.md.

Importing this package costs nothing (it only turns gradio's analytics off): gradio and jax are
imported by the app modules.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType

# The demos never phone home: gradio reads this when a Blocks is made and at launch (version check).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

# App name -> its module. `all` is the suite of every other app, as tabs in this order.
APPS: Mapping[str, str] = MappingProxyType(
    {
        "canny": "controlsprint.demos.canny",
        "sam": "controlsprint.demos.sam",
        "hands": "controlsprint.demos.hands",
        "interior": "controlsprint.demos.interior",
        "colorize": "controlsprint.demos.colorize",
        "video": "controlsprint.demos.video",
    }
)
SUITE = "all"

# Upload limits of every app: gradio refuses larger files before they reach an app; larger images
# (by pixels, read from the header) get a message.
MAX_FILE_SIZE = "20mb"
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE


def app_names() -> tuple[str, ...]:
    """Every app name the CLI accepts, the suite last."""
    return (*APPS, SUITE)
