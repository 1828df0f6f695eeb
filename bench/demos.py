"""The demos as served: warm request latency per app, and launch -> first served image.

    python bench/demos.py [--model DIR] [--steps 20] [--repeats 7] [--launch-repeats 2]

Warm latency: every app's generate event on its bundled example, called through a real server with
gradio_client (upload, queue, handler, PNG encode, download) and, alternately, the same handler called
directly in-process (the same extraction and core call, no web layer). The ratio is what serving costs;
an app that does nothing (one image in, two PNGs out) gives gradio's own floor for comparison.

Launch: `controlsprint demo canny` as a fresh process, timed from its start to the printed URL (imports,
model load) and to the first generated image a client receives (which includes compiling the sampling
program). "cold" gives each run an empty compilation cache directory; "warm" a directory a previous run
filled, as a restarted server has. Cold and warm runs alternate.

Without --model: the embedded default model when present, else a tiny random pipeline (the tests' own:
128 px, ControlNets canny/segment/hands/gray) in a temporary folder, which measures the serving stack
rather than a real model. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, alternate, emit

# The generation settings after the prompt, steps left out: negative prompt | steps | guidance, control
# strength, seed, short side (0: the model's native size).
PROMPT_SETTINGS = ("", 7.5, 1.0, 0, 0)


def tiny_model(folder: Path) -> Path:
    from controlsprint.models.pipeline import save_pipeline
    from tests.test_inference import _with_live_zero_convs
    from tests.test_pipeline_folder import tiny_pipeline

    pipe = _with_live_zero_convs(tiny_pipeline())
    controlnet = pipe.controlnets["canny"]
    return save_pipeline(folder, pipe.with_controlnets({n: controlnet for n in ("segment", "hands", "gray")}))


def requests(tmp: Path) -> dict[str, tuple[str, list, list]]:
    """app -> (api name, client arguments, direct handler arguments), before the generation settings."""
    from gradio_client import handle_file
    from PIL import Image

    from controlsprint.demos.ui import example

    def path(name: str) -> str:
        return example(name)[0]

    def rgba(file: str) -> np.ndarray:
        return np.asarray(Image.open(file).convert("RGBA"))

    room = rgba(path("room.png"))
    strokes = np.zeros_like(room)
    strokes[140:210, 100:290] = (255, 0, 255, 255)  # the sofa
    Image.fromarray(strokes).save(tmp / "strokes.png")

    def editor(file: str, *layers: str) -> dict:
        return {
            "background": handle_file(file),
            "layers": [handle_file(x) for x in layers],
            "composite": None,
        }

    return {
        "canny": (
            "canny_generate",
            [editor(path("shapes.png")), 100, 200],
            [{"background": rgba(path("shapes.png")), "layers": [], "composite": None}, 100, 200],
        ),
        "sam": ("sam_generate", [handle_file(path("scene.png")), None], [path("scene.png"), None]),
        "hands": ("hands_generate", [handle_file(path("hands.png")), 0.5], [path("hands.png"), 0.5]),
        "interior": (
            "interior_generate",
            [editor(path("room.png"), str(tmp / "strokes.png")), 1.0],
            [{"background": room, "layers": [strokes], "composite": None}, 1.0],
        ),
        "colorize": ("colorize_generate", [handle_file(path("grey.png")), True], [path("grey.png"), True]),
    }


def warm_latency(model: str, steps: int, repeats: int, tmp: Path) -> dict[str, dict[str, float]]:
    from gradio_client import Client

    from controlsprint.demos.launch import build, start
    from controlsprint.inference.loading import load_core
    from controlsprint.runtime import enable_compilation_cache

    enable_compilation_cache(str(tmp / "xla-warm-latency"))
    demo = build("all", load_core(model))
    client = Client(start(demo, port=0), verbose=False)
    handlers = {fn.api_name: fn.fn for fn in demo.fns.values()}
    out = {}
    try:
        for app, (api_name, client_args, direct_args) in requests(tmp).items():
            prompt = ["a picture", PROMPT_SETTINGS[0], steps, *PROMPT_SETTINGS[1:]]
            runs = {
                "client": lambda a=client_args, n=api_name, p=prompt: client.predict(
                    *a, *p, api_name=f"/{n}"
                ),
                "direct": lambda a=direct_args, n=api_name, p=prompt: handlers[n](
                    *a, *p, progress=_no_progress
                ),
            }
            for run in runs.values():  # compile (or load) the program and build extractors first
                run()
            print(f"{app}:", flush=True)
            medians = alternate(runs, repeats)
            medians["overhead_ms"] = (medians["client"] - medians["direct"]) * 1000
            medians["ratio"] = medians["client"] / medians["direct"]
            out[app] = medians
            print(
                f"  {app}: client {medians['client'] * 1000:.0f} ms, direct {medians['direct'] * 1000:.0f} ms, "
                f"serving +{medians['overhead_ms']:.0f} ms (x{medians['ratio']:.2f})",
                flush=True,
            )
    finally:
        demo.close(verbose=False)
    return out


def _no_progress(*args, **kwargs) -> None:
    return None


def gradio_floor(repeats: int) -> float:
    """Median seconds of a request to an app that does no work: one image in, two PNGs out (what
    gradio and its client cost by themselves on this machine)."""
    import gradio as gr
    from gradio_client import Client, handle_file

    from controlsprint.demos.launch import start
    from controlsprint.demos.ui import example

    with gr.Blocks(analytics_enabled=False) as echo:
        photo, first, second = gr.Image(type="filepath"), gr.Image(format="png"), gr.Image(format="png")
        blank = np.zeros((256, 256, 3), np.uint8)
        gr.Button().click(lambda _: (blank, blank + 1), photo, [first, second], api_name="echo")
    client = Client(start(echo.queue(), port=0), verbose=False)
    picture = handle_file(example("shapes.png")[0])
    try:
        return alternate(
            {"floor": lambda: client.predict(picture, api_name="/echo")}, repeats, verbose=False
        )["floor"]
    finally:
        echo.close(verbose=False)


def launch_once(model: str, cache: Path, steps: int) -> tuple[float, float]:
    """(seconds to the URL line, seconds to the first image) for a fresh `controlsprint demo canny`."""
    from gradio_client import Client, handle_file

    from controlsprint.demos.ui import example

    env = {**os.environ, "CONTROLSPRINT_COMPILATION_CACHE": str(cache)}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "controlsprint", "demo", "canny", "--model", model, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        line = process.stdout.readline()
        url_at = time.perf_counter() - start
        match = re.search(r"running on (\S+)", line)
        if not match:
            raise SystemExit(f"controlsprint demo did not start: {line!r}")
        picture = {"background": handle_file(example("shapes.png")[0]), "layers": [], "composite": None}
        settings = ["a picture", PROMPT_SETTINGS[0], steps, *PROMPT_SETTINGS[1:]]
        Client(match.group(1), verbose=False).predict(
            picture, 100, 200, *settings, api_name="/canny_generate"
        )
        return url_at, time.perf_counter() - start
    finally:
        process.terminate()
        process.wait(timeout=60)


def launch_times(model: str, steps: int, repeats: int, tmp: Path) -> dict[str, dict[str, float]]:
    warm_cache = tmp / "xla-launch-warm"
    launch_once(model, warm_cache, steps)  # fills the warm cache (not timed)
    times: dict[str, list[tuple[float, float]]] = {"cold": [], "warm": []}
    for round_ in range(repeats):
        for kind in ("cold", "warm") if round_ % 2 == 0 else ("warm", "cold"):
            cache = warm_cache if kind == "warm" else Path(tempfile.mkdtemp(dir=tmp, prefix="xla-cold-"))
            times[kind].append(launch_once(model, cache, steps))
            url_at, image_at = times[kind][-1]
            print(f"  launch round {round_ + 1}/{repeats} {kind}: URL {url_at:.1f} s, first image {image_at:.1f} s", flush=True)  # fmt: skip
    return {
        kind: {
            "to_url_s": statistics.median(t[0] for t in runs),
            "to_first_image_s": statistics.median(t[1] for t in runs),
        }
        for kind, runs in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model folder (default: embedded model, else a tiny random one)")
    parser.add_argument(
        "--steps", type=int, default=20, help="denoising steps per request (the apps' default)"
    )
    parser.add_argument("--repeats", type=int, default=7, help="warm requests per app and path")
    parser.add_argument("--launch-repeats", type=int, default=2, help="cold and warm launches each")
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

    from controlsprint.models.default import EMBEDDED_MODEL_DIR

    with tempfile.TemporaryDirectory(prefix="bench-demos-") as scratch:
        tmp = Path(scratch)
        model = args.model
        if model is None:
            embedded = (EMBEDDED_MODEL_DIR / "model_index.json").is_file()
            model = str(EMBEDDED_MODEL_DIR if embedded else tiny_model(tmp / "tiny"))
        print(f"model: {model}; {args.steps} steps", flush=True)
        print("warm request latency (suite server; client vs direct handler call):", flush=True)
        latency = warm_latency(model, args.steps, args.repeats, tmp)
        floor = gradio_floor(args.repeats)
        print(f"  gradio floor (image in, two PNGs out, no work): {floor * 1000:.0f} ms", flush=True)
        print("launch -> first served image (controlsprint demo canny):", flush=True)
        launch = launch_times(model, args.steps, args.launch_repeats, tmp)
        for kind, figures in launch.items():
            print(
                f"  {kind}: URL after {figures['to_url_s']:.1f} s, first image after {figures['to_first_image_s']:.1f} s"
            )
        emit(
            {
                "bench": "demos",
                "model": "tiny-random" if model.startswith(str(tmp)) else model,
                "steps": args.steps,
                "warm_latency": {app: {k: round(v, 4) for k, v in m.items()} for app, m in latency.items()},
                "gradio_floor_s": round(floor, 4),
                "launch": {kind: {k: round(v, 2) for k, v in m.items()} for kind, m in launch.items()},
            }
        )


if __name__ == "__main__":
    main()
