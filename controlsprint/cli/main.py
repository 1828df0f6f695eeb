"""`controlsprint`: the one command line of the project.

Each subcommand lives in its own module of this package and exposes:
  NAME, HELP (one line for the command list), DESCRIPTION (for `controlsprint NAME --help`),
  USES_JAX (whether to set up the compilation cache first), add_arguments(parser), run(args) -> int.
Modules import their heavy dependencies inside `run`, so `controlsprint --help` stays instant.

User mistakes raise `UserError`: one line on stderr, exit code 2, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from controlsprint import __version__
from controlsprint.errors import UserError

# The subcommands, in the order a sprint uses them. A command is listed here only once it works.
COMMAND_MODULES: tuple[str, ...] = (
    "controlsprint.cli.extract",
    "controlsprint.cli.synth",
    "controlsprint.cli.prepare",
    "controlsprint.cli.train",
    "controlsprint.cli.generate",
    "controlsprint.cli.generate_video",
    "controlsprint.cli.eval",
    "controlsprint.cli.export",
    "controlsprint.cli.demo",
    "controlsprint.cli.bench",
)

EPILOG = """\
Every command takes --help. User mistakes exit with code 2 and one line on stderr.
Docs: docs/ in the repository (README.md has the tour)."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print only the error, as one line, and exit 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32)


def _load_commands() -> list:
    return [importlib.import_module(name) for name in COMMAND_MODULES]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = OneLineErrorParser(
        prog="controlsprint",
        description="Run a ControlNet sprint end to end in JAX: extract conditions, build datasets, "
        "train Flax ControlNets, generate, evaluate, export and demo.",
        epilog=EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"controlsprint {__version__}")
    parser.add_argument(
        "--compile-cache",
        metavar="DIR|off",
        default=None,
        help="JAX persistent compilation cache dir, or 'off' "
        "(default: $CONTROLSPRINT_COMPILATION_CACHE or ~/.cache/controlsprint/jax)",
    )
    commands = {}
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=OneLineErrorParser
    )
    for module in _load_commands():
        command_parser = sub.add_parser(
            module.NAME, help=module.HELP, description=module.DESCRIPTION, formatter_class=_Formatter
        )
        module.add_arguments(command_parser)
        commands[module.NAME] = module
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = commands[args.command]
    prog = f"controlsprint {args.command}"
    try:
        if getattr(module, "USES_JAX", False):
            from controlsprint.runtime import enable_compilation_cache

            enable_compilation_cache(args.compile_cache)
        return int(module.run(args) or 0)
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `controlsprint ... | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
