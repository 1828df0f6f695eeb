"""The command line as users meet it: help texts, one-line errors with exit code 2, no tracebacks."""

from __future__ import annotations

import pytest

from controlsprint.cli.main import COMMAND_MODULES, build_parser
from tests.conftest import run_cli_process

EXPECTED_ORDER = [
    "extract",
    "synth",
    "prepare",
    "train",
    "generate",
    "generate-video",
    "eval",
    "export",
    "demo",
    "bench",
]


def _names() -> list[str]:
    return list(build_parser()[1])


def test_top_level_help_lists_every_registered_command(cli):
    code, out, _ = cli("--help")
    assert code == 0
    assert "usage: controlsprint" in out
    for name in _names():
        assert f"    {name}" in out
    assert len(_names()) == len(COMMAND_MODULES)
    # only commands from the sprint's set, in the sprint's order
    assert [n for n in EXPECTED_ORDER if n in _names()] == _names()


@pytest.mark.parametrize("name", _names())
def test_each_command_has_clear_help(cli, name):
    code, out, _ = cli(name, "--help")
    assert code == 0
    assert out.startswith(f"usage: controlsprint {name}")
    assert len(out.splitlines()) >= 3


def test_no_command_prints_help(cli):
    code, out, _ = cli()
    assert code == 0 and "commands:" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_user_mistakes_are_one_line_exit_2(args, fragment):
    proc = run_cli_process(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("controlsprint: error:") and fragment in lines[0]
    assert "Traceback" not in proc.stderr


def test_version(cli):
    from controlsprint import __version__

    code, out, _ = cli("--version")
    assert code == 0 and out.strip() == f"controlsprint {__version__}"
