"""Every Hugging Face Space folder: front matter, pinned requirements that satisfy pyproject.toml, and an
app.py that imports, builds its page (every event named) and loads no model doing so."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest
from packaging.requirements import Requirement

from controlsprint import __version__
from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli on Python 3.10
    import tomli as tomllib

SPACES = REPO / "spaces"
FOLDERS = sorted(path.parent.name for path in SPACES.glob("*/app.py"))
# Space folder -> the app it serves and the api names its page must expose.
EXPECTED = {
    "canny": ("canny", {"canny_condition", "canny_generate"}),
    "sam": ("sam", {"sam_segment", "sam_generate"}),
    "hands": ("hands", {"hands_condition", "hands_generate"}),
    "interior": ("interior", {"interior_segment", "interior_generate"}),
    "colorize": ("colorize", {"colorize_condition", "colorize_generate"}),
    "video": ("video", {"video_condition", "video_generate"}),
}
EXPECTED["suite"] = ("all", set().union(*(names for _, names in EXPECTED.values())))


def test_there_is_a_space_per_app_and_one_for_the_suite():
    assert sorted(EXPECTED) == FOLDERS


def front_matter(folder: str) -> dict[str, str]:
    text = (SPACES / folder / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, f"spaces/{folder}/README.md: no YAML front matter"
    fields = dict(line.split(": ", 1) for line in match.group(1).splitlines())
    assert len(fields) == len(match.group(1).splitlines())  # one `key: value` a line
    return fields


def pinned(folder: str) -> dict[str, Requirement]:
    lines = (SPACES / folder / "requirements.txt").read_text().splitlines()
    return {
        r.name.lower(): r for r in (Requirement(line) for line in lines if line and not line.startswith("#"))
    }


@pytest.mark.parametrize("folder", sorted(EXPECTED))
def test_space_front_matter_and_pinned_requirements(folder):
    fields = front_matter(folder)
    assert {"title", "emoji", "sdk", "sdk_version", "app_file", "license"} <= set(fields)
    assert fields["sdk"] == "gradio" and fields["app_file"] == "app.py" and fields["license"] == "apache-2.0"
    assert fields["title"] and fields["emoji"] and len(fields.get("short_description", "")) <= 60
    requirements = pinned(folder)
    for name, requirement in requirements.items():
        if name == "controlsprint":  # the project itself, at its release tag
            assert requirement.url and requirement.url.endswith(f"@v{__version__}")
            continue
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"spaces/{folder}/requirements.txt: {requirement} is not pinned"
    # The Space's gradio is the front matter's sdk_version, and the pins satisfy pyproject.toml.
    assert str(requirements["gradio"].specifier) == f"=={fields['sdk_version']}"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for line in project["dependencies"]:
        wanted = Requirement(line)
        assert wanted.name.lower() in requirements, f"spaces/{folder}/requirements.txt lacks {wanted.name}"
        version = next(iter(requirements[wanted.name.lower()].specifier)).version
        assert wanted.specifier.contains(version), f"{wanted.name}=={version} breaks pyproject's {line}"
    assert (SPACES / folder / "requirements.txt").read_text() == (
        SPACES / "canny" / "requirements.txt"
    ).read_text()


def test_space_apps_import_build_their_page_and_load_no_model(monkeypatch):
    from controlsprint.demos.core import SharedCore

    loads = []
    monkeypatch.setattr(SharedCore, "get", lambda self: loads.append(self))
    for folder, (app, api_names) in EXPECTED.items():
        spec = importlib.util.spec_from_file_location(f"space_{folder}", SPACES / folder / "app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # what a Space does first
        assert f'space_demo("{app}")' in (SPACES / folder / "app.py").read_text()
        named = {fn.api_name for fn in module.demo.fns.values() if not fn.api_name.endswith("_example")}
        assert named == api_names
        assert callable(module.launch_space)
    assert loads == []


def test_space_folders_are_what_the_generator_writes_apart_from_the_pinned_versions():
    """spaces/make_spaces.py is the one source: front matter and app.py match it exactly here; the
    pins match it where this environment has the same versions (CI may resolve newer ones)."""
    spec = importlib.util.spec_from_file_location("make_spaces", SPACES / "make_spaces.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    for folder in EXPECTED:
        made = generator.files(folder)
        assert (SPACES / folder / "app.py").read_text() == made["app.py"]
        body = (SPACES / folder / "README.md").read_text().split("\n---\n", 1)[1]
        assert body == made["README.md"].split("\n---\n", 1)[1]
        assert pinned(folder).keys() == {
            Requirement(line).name.lower()
            for line in made["requirements.txt"].splitlines()
            if line and not line.startswith("#")
        }
