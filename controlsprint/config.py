"""Configs as code: frozen dataclasses, `--set key=value` overrides, dict round trips.

A config is a frozen dataclass whose fields are plain values (bool, int, float, str, None, tuples of
those, `Literal[...]` choices) or nested config dataclasses. Config files are Python modules with a
`get_config()` function (see `train/configs/`), so a config is read, diffed and reviewed like code.

Overrides use dotted paths into nested configs, and the value text is parsed by the field's declared
type, so `--set optimizer.learning_rate=3e-4` gives a float and `--set model.block_out_channels=32,64`
a tuple. An unknown key or a value of the wrong type is a `UserError`, never a silently ignored typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from controlsprint.errors import UserError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


def _field_types(cls: type) -> dict[str, Any]:
    # get_type_hints resolves the string annotations that `from __future__ import annotations` leaves.
    return typing.get_type_hints(cls)


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _parse_scalar(text: str, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if kind is Any:
        return text
    if origin is typing.Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise UserError(f"--set {key}={text}: must be one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and text.lower() in _NONE:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _parse_scalar(text, option, key)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if len(errors) == 1 else f"--set {key}={text}: not a valid value")
    if origin is tuple:
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(p, args[0], key) for p in parts)
        if len(parts) != len(args):
            raise UserError(f"--set {key}={text}: expected {len(args)} comma-separated values")
        return tuple(_parse_scalar(p, a, key) for p, a in zip(parts, args, strict=True))
    if kind is bool:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UserError(f"--set {key}={text}: expected true or false")
    if kind is int:
        try:
            return int(text.replace("_", ""))
        except ValueError:
            raise UserError(f"--set {key}={text}: expected an integer") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise UserError(f"--set {key}={text}: expected a number") from None
    if kind is str:
        return text
    if dataclasses.is_dataclass(kind):
        raise UserError(f"--set {key}={text}: '{key}' is a group of settings; set one of its keys instead")
    raise UserError(f"--set {key}={text}: cannot set a value of type {kind!r} from the command line")


def _unknown_key(key: str, part: str, cfg: Any) -> UserError:
    names = [f.name for f in dataclasses.fields(cfg)]
    close = difflib.get_close_matches(part, names, n=1)
    prefix = key[: len(key) - len(key.split(".")[-1])] if key.endswith(part) else ""
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
    return UserError(f"unknown config key '{key}'{hint}")


def _set_path(cfg: C, path: list[str], text: str, key: str) -> C:
    head, rest = path[0], path[1:]
    if not _is_config(cfg) or head not in {f.name for f in dataclasses.fields(cfg)}:
        raise _unknown_key(key, head, cfg)
    current = getattr(cfg, head)
    if rest:
        if not _is_config(current):
            raise UserError(f"unknown config key '{key}': '{head}' is a value, not a group of settings")
        return dataclasses.replace(cfg, **{head: _set_path(current, rest, text, key)})
    kind = _field_types(type(cfg))[head]
    return dataclasses.replace(cfg, **{head: _parse_scalar(text, kind, key)})


def override(cfg: C, assignments: Iterable[str]) -> C:
    """Return `cfg` with each `key=value` (dotted keys for nested configs) applied in order."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {assignment}: expected key=value")
        cfg = _set_path(cfg, key.split("."), text.strip(), key)
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config (tuples become lists)."""
    if not _is_config(cfg):
        raise TypeError(f"not a config dataclass: {cfg!r}")

    def plain(value: Any) -> Any:
        if _is_config(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def from_dict(cls: type[C], data: Mapping[str, Any], *, strict: bool = True, source: str = "config") -> C:
    """Build config `cls` from a dict (such as a parsed config.json).

    With `strict`, unknown keys are an error; otherwise they are ignored (diffusers config.json files
    carry bookkeeping keys like `_class_name` and `_diffusers_version`).
    """
    types_ = _field_types(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in data if k not in names and not k.startswith("_"))
    if strict and unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__}")
    values = {}
    for name in names & set(data):
        kind, value = types_[name], data[name]
        if dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            value = from_dict(kind, value, strict=strict, source=f"{source}.{name}")
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        if problem := _type_problem(value, kind):
            raise UserError(f"{source}: {name}={value!r} {problem}")
        values[name] = value
    try:
        return cls(**values)
    except TypeError as err:
        raise UserError(f"{source}: {err}") from None


def _type_problem(value: Any, kind: Any) -> str | None:
    """Why `value` does not fit the declared `kind` (Literal choices, numbers, tuples), or None."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Literal:
        return None if value in args else f"must be one of {', '.join(map(str, args))}"
    if origin in (typing.Union, types.UnionType):
        problems = [_type_problem(value, a) for a in args if not (a is type(None) and value is not None)]
        return None if value is None and type(None) in args or None in problems else problems[0]
    if origin is tuple:
        if not isinstance(value, tuple):
            return "must be a list"
        inner = args[:1] * len(value) if len(args) == 2 and args[1] is Ellipsis else args
        if len(inner) != len(value):
            return f"must have {len(inner)} values"
        return next((p for v, a in zip(value, inner, strict=True) if (p := _type_problem(v, a))), None)
    if kind is bool:
        return None if isinstance(value, bool) else "must be true or false"
    if kind is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "must be an integer"
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "must be a number"
    if kind is str:
        return None if isinstance(value, str) else "must be a string"
    return None


def load_config_module(spec: str, search_dirs: Iterable[Path] = ()) -> types.ModuleType:
    """Import a config file given as a path (`my/config.py`) or a name found in `search_dirs`."""
    search_dirs = [Path(d) for d in search_dirs]
    candidates = [Path(spec)] if spec.endswith(".py") else []
    candidates += [d / f"{spec.replace('-', '_')}.py" for d in search_dirs]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        known = sorted({p.stem for d in search_dirs for p in d.glob("*.py") if not p.stem.startswith("_")})
        listing = f"; known configs: {', '.join(known)}" if known else ""
        raise UserError(f"config '{spec}' not found{listing}")
    module_name = f"controlsprint_config_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # dataclasses defined in the file need their module registered
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "get_config", None)):
        raise UserError(f"config file {path} has no get_config() function")
    return module
