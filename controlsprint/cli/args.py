"""Argument helpers shared by subcommands."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from controlsprint.errors import UserError

T = TypeVar("T")


def parse_assignments(
    values: Iterable[str] | None, flag: str, convert: Callable[[str], T] = str
) -> dict[str, T]:
    """`["canny=0.5", "seg=1"]` -> {"canny": 0.5, "seg": 1.0}; a bad item names the flag."""
    out: dict[str, T] = {}
    for item in values or ():
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise UserError(f"{flag} {item}: expected NAME=VALUE")
        try:
            out[name.strip()] = convert(text.strip())
        except ValueError:
            raise UserError(f"{flag} {item}: '{text}' is not a valid value") from None
    return out
