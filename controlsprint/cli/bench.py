"""`controlsprint bench`: list and run the benchmarks of the source checkout's `bench/` folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from controlsprint.errors import UserError

NAME = "bench"
HELP = "list or run the benchmarks in bench/ (ours vs the reference, same run, medians)"
DESCRIPTION = """\
Run one benchmark of the repository's bench/ folder in a fresh process (the same Python), passing
the remaining arguments to it; its exit code is this command's. Each benchmark measures controlsprint
against its reference alternately in one run, prints medians and ratios, and ends with one JSON line.
The benchmarks ship with the source checkout (an editable install), not with a wheel.

examples:
  controlsprint bench --list
  controlsprint bench inference --repeats 5 --batches 1,4
  controlsprint bench models --size 512 --repeats 3
  controlsprint bench extract --only canny,hands"""
USES_JAX = False

HELPER_MODULES = frozenset({"common"})  # shared code of the benchmarks; so is every `_name.py`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="benchmark to run (see --list)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments for the benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks with one line each")


def bench_folder() -> Path:
    """bench/ beside the controlsprint package, i.e. in the source checkout it was installed from."""
    folder = Path(__file__).resolve().parents[2] / "bench"
    if not folder.is_dir():
        raise UserError(
            f"no benchmarks folder at {folder}: the benchmarks ship with the source checkout "
            "(git clone, then pip install -e .), not with an installed wheel"
        )
    return folder


def benchmarks(folder: Path) -> dict[str, Path]:
    return {
        p.stem: p
        for p in sorted(folder.glob("*.py"))
        if p.stem not in HELPER_MODULES and not p.stem.startswith("_")
    }


def summary(path: Path) -> str:
    """The first line of the benchmark's module docstring (read, not imported)."""
    import ast

    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (SyntaxError, UnicodeDecodeError, OSError):
        doc = ""
    return doc.strip().splitlines()[0] if doc.strip() else "(no description)"


def run(args: argparse.Namespace) -> int:
    import subprocess
    import sys

    found = benchmarks(bench_folder())
    if args.list or not args.name:
        width = max(map(len, found), default=0)
        for name, path in found.items():
            print(f"{name:<{width}}  {summary(path)}")
        return 0
    if args.name not in found:
        raise UserError(f"no benchmark named '{args.name}' (available: {', '.join(found) or 'none'})")
    return subprocess.run([sys.executable, str(found[args.name]), *args.args], check=False).returncode
