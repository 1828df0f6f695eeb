"""Write the Hugging Face Space folders (spaces/<name>/) from one template:

    python spaces/make_spaces.py          # after a change to the apps' titles or the pinned stack

Each folder is a whole Space: README.md (the Spaces YAML front matter), app.py (imports the app from
the installed controlsprint; the model loads on the first request) and requirements.txt (the stack
pinned to the versions installed here, which the test suite ran on; gradio pinned to the front
matter's sdk_version). tests/test_spaces.py checks every folder.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from controlsprint import __version__  # noqa: E402

SOURCE = "https://github.com/controlsprint/controlsprint"
# Space folder -> (app name for `controlsprint demo`, title, emoji, one-line description).
SPACES = {
    "canny": ("canny", "controlsprint Canny", "✏️", "ControlNet from Canny edges of a photo or a sketch"),
    "sam": ("sam", "controlsprint Segmentation", "🧩", "ControlNet from an editable segmentation map"),
    "hands": ("hands", "controlsprint Hands", "✋", "ControlNet from MediaPipe hand skeletons"),
    "interior": ("interior", "controlsprint Interior", "🛋️", "Repaint a painted region of a room photo"),
    "colorize": ("colorize", "controlsprint Colorize", "🎨", "Colorize grayscale photos with a ControlNet"),
    "video": ("video", "controlsprint Video", "🎬", "A short clip from a prompt and a first-frame hint"),
    "suite": ("all", "controlsprint demos", "🎛️", "Every controlsprint ControlNet demo as a tab"),
}


def _dependency_names() -> list[str]:
    """controlsprint's runtime dependencies, by distribution name, from pyproject.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(line).name for line in project["dependencies"]]


def requirements() -> str:
    pins = [f"{name}=={metadata.version(name)}" for name in _dependency_names()]
    lines = [
        "# The stack controlsprint's tests ran on (spaces/make_spaces.py writes this file).",
        f"controlsprint @ git+{SOURCE}@v{__version__}",
        *sorted(pins, key=str.lower),
    ]
    return "\n".join(lines) + "\n"


def readme(folder: str) -> str:
    app, title, emoji, description = SPACES[folder]
    gradio = metadata.version("gradio")
    command = "controlsprint demo" + ("" if app == "all" else f" {app}")
    return f"""---
title: {title}
emoji: {emoji}
colorFrom: indigo
colorTo: gray
sdk: gradio
sdk_version: {gradio}
app_file: app.py
license: apache-2.0
short_description: {description}
pinned: false
---

# {title}

{description}. Built with [controlsprint]({SOURCE}): Flax ControlNets trained on the project's own
synthetic data, served by one shared JAX inference core; nothing is downloaded at run time.

The model is the embedded default one unless the Space sets `CONTROLSPRINT_MODEL` to a model folder;
the segmentation apps use SAM when `CONTROLSPRINT_SAM_MODEL` names a local SAM folder. The model loads
on the first request. The same app runs locally with `{command}`; see docs/demos.md in the repository.
"""


def app_py(folder: str) -> str:
    app, title, _, _ = SPACES[folder]
    return f'''"""Hugging Face Space: {title}. The app is `controlsprint demo {app}`'s, over the default model."""

from controlsprint.demos.launch import launch_space, space_demo

demo = space_demo("{app}")  # builds the page only: the model loads on the first request

if __name__ == "__main__":
    launch_space(demo)
'''


def files(folder: str) -> dict[str, str]:
    return {"README.md": readme(folder), "app.py": app_py(folder), "requirements.txt": requirements()}


def main() -> None:
    for folder in SPACES:
        for name, text in files(folder).items():
            path = HERE / folder / name
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        print(f"wrote spaces/{folder}/")


if __name__ == "__main__":
    main()
