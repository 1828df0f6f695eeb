"""Shared test fixtures: the real test photos, the CLI runner, a private compilation cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_testdata() -> Path | None:
    if env := os.environ.get("CONTROLSPRINT_TESTDATA"):
        return Path(env)
    # The workplace keeps the real photos in shared/testdata/images beside the checkout.
    for parent in REPO.parents:
        candidate = parent / "shared" / "testdata" / "images"
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """Compiled programs are shared between tests (and test processes) through a private cache dir."""
    from controlsprint.runtime import enable_compilation_cache

    directory = os.environ.get("CONTROLSPRINT_TEST_COMPILATION_CACHE") or str(
        tmp_path_factory.mktemp("xla-cache")
    )
    os.environ["CONTROLSPRINT_COMPILATION_CACHE"] = directory  # subprocesses started by tests share it
    enable_compilation_cache(directory)


@pytest.fixture(scope="session")
def photos() -> Path:
    """Directory of the real test photos (see its NOTICE.md); set CONTROLSPRINT_TESTDATA to move it."""
    found = _find_testdata()
    if found is None or not (found / "hand_thumb_up.jpg").is_file():
        pytest.fail("real test photos not found: set CONTROLSPRINT_TESTDATA to shared/testdata/images")
    return found


@pytest.fixture
def cli(capsys):
    """Run `controlsprint ARGS...` in this process; returns (exit_code, stdout, stderr)."""
    from controlsprint.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's --help and errors exit
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def sigint_live() -> None:
    """`preexec_fn` for a child the test will Ctrl-C: a background job (nohup, `cmd &`) starts with
    SIGINT ignored, every child inherits that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli_process(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python -m controlsprint ARGS...` as a real process (for exit codes and stderr as users see them)."""
    return subprocess.run(
        [sys.executable, "-m", "controlsprint", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        cwd=REPO,
    )
