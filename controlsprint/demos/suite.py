"""The suite: every app as a tab of one page, all over one shared core (the model loads once).

Run it with `controlsprint demo` (or `controlsprint demo all`) or `python demos/suite.py`.
"""

from __future__ import annotations

import importlib

import gradio as gr

from controlsprint.demos import APPS
from controlsprint.demos.core import SharedCore

TITLE = "controlsprint demos"
INTRO = (
    "ControlNet apps over one model: pick a tab. Every tab shows the condition the model gets "
    "(edges, regions, hand skeletons, brightness, the first frame of a clip) before it generates."
)


def create_demo(core) -> gr.Blocks:
    """Every app of `APPS` in its own tab, over the same `core` (an `InferenceCore` or a `SharedCore`)."""
    shared = SharedCore.of(core)
    modules = {name: importlib.import_module(module) for name, module in APPS.items()}
    # Built before the suite's own context: a Blocks made inside another renders itself in place, and
    # `.render()` below would then add a second copy.
    apps = {name: module.create_demo(shared) for name, module in modules.items()}
    with gr.Blocks(title=TITLE, analytics_enabled=False) as suite:
        gr.Markdown(f"## {TITLE}\n\n{INTRO}")
        with gr.Tabs():
            for name, app in apps.items():
                with gr.Tab(modules[name].TITLE, id=name):
                    app.render()
    return suite
