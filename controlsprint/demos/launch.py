"""Build an app by name and serve it: queue, upload limit, the URL line, Ctrl-C. Used by `controlsprint
demo`, the `demos/*.py` scripts, the Spaces' `app.py` files, the tests and the benchmark.
"""

from __future__ import annotations

import importlib
import socket
import sys
import time
from collections.abc import Mapping

import gradio as gr

from controlsprint.demos import APPS, MAX_FILE_SIZE, SUITE, app_names
from controlsprint.demos.core import SharedCore
from controlsprint.errors import UserError

QUEUE_SIZE = 64  # requests waiting at once; beyond it a visitor is told the queue is full
DEFAULT_PORT = 7860


def build(app: str, core) -> gr.Blocks:
    """The Blocks of `app` ("canny", ..., or "all" for the suite) over `core`, queue configured."""
    if app == SUITE:
        module = "controlsprint.demos.suite"
    elif app in APPS:
        module = APPS[app]
    else:
        raise UserError(f"unknown demo '{app}'; known: {', '.join(app_names())}")
    demo = importlib.import_module(module).create_demo(SharedCore.of(core))
    # Events set their own limits (previews a few at once, generations one at a time); this is the
    # default for any other event, such as loading an example.
    return demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)


def free_port(host: str) -> int:
    """A TCP port nobody listens on now (for --port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = None, share: bool = False) -> str:
    """Serve `demo` in background threads; returns its local URL. `port` 0 picks a free port, None
    lets gradio take the first free one from 7860 ($GRADIO_SERVER_PORT)."""
    if port == 0:
        port = free_port(host)
    try:
        _, url, share_url = demo.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=True,
            quiet=True,
            max_file_size=MAX_FILE_SIZE,
        )
    except OSError as err:  # the port is taken, or the host is not an address of this machine
        raise UserError(
            f"cannot serve on {host}:{port if port is not None else DEFAULT_PORT}: {err}"
        ) from None
    return share_url or url


def serve(
    app: str,
    *,
    model: str | None = None,
    controlnets: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    port: int | None = None,
    share: bool = False,
) -> int:
    """Load the model, serve `app`, print its URL, and block until Ctrl-C (then close the server)."""
    core = SharedCore.from_model(model, controlnets)
    core.get()  # load now: a bad --model is reported before anything is served
    demo = build(app, core)
    url = start(demo, host=host, port=port, share=share)
    print(f"controlsprint demo: {app} running on {url} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("controlsprint demo: stopped", file=sys.stderr, flush=True)
    finally:
        _close_within(demo, seconds=10)
    return 0


def _close_within(demo: gr.Blocks, seconds: float) -> None:
    """Close the server, but do not let Ctrl-C hang: uvicorn's graceful shutdown waits for open client
    connections (a browser tab, a gradio_client's event stream), so after `seconds` the process ends."""
    import os
    import threading

    closer = threading.Thread(target=demo.close, daemon=True)
    closer.start()
    closer.join(timeout=seconds)
    if closer.is_alive():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def space_demo(app: str) -> gr.Blocks:
    """A Space's `demo`: the app over the default model ($CONTROLSPRINT_MODEL or the embedded one),
    loaded on the first request, so importing `app.py` stays quick."""
    return build(app, SharedCore.from_model())


def launch_space(demo: gr.Blocks) -> None:
    """What a Space's `app.py` runs: gradio's own launch (Spaces set the host and port) with our limits."""
    from controlsprint.runtime import enable_compilation_cache

    enable_compilation_cache()
    demo.launch(max_file_size=MAX_FILE_SIZE)


def run_script(app: str) -> int:
    """`python demos/<app>.py ARGS`: the same as `controlsprint demo <app> ARGS`."""
    from controlsprint.cli.main import main

    return main(["demo", app, *sys.argv[1:]])
