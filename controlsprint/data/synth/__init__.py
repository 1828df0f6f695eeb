"""Offline synthetic conditioning data: a registry of scene kinds, rendered deterministically per row.

Row i of a dataset made with seed S is kind `kinds[i % len(kinds)]`, rendered from a generator seeded
by `row_seed(S, i)`; the row stores that seed, so one row can be regenerated alone
(`render_scene(kind, seed, size)`) and the dataset does not depend on sharding or worker count.

A kind is a `Kind(name, description, conditions, render)` whose `render(rng, size)` returns a `Scene`.
Every condition in `CONDITIONS` is computed from any scene (see `ground_truth`), so still kinds mix
freely in one dataset. A new kind is one module and one line in `_KIND_MODULES`. Clip kinds (`motion`)
render `frames` frames per row and do not mix with still kinds (a dataset either has clips or not).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType

from controlsprint.errors import UserError

# name -> (module, attribute); imported on first use so `import controlsprint.data.synth` stays cheap.
_KIND_MODULES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "shapes": ("controlsprint.data.synth.shapes", "SHAPES"),
        "hands": ("controlsprint.data.synth.hands", "HANDS"),
        "motion": ("controlsprint.data.synth.motion", "MOTION"),
    }
)
# Clip length of clip kinds: 8 frames unless asked; at least 2 (one frame cannot show the motion its
# caption names), at most 64 (a 64-frame strip of 512 px frames is already a 32768 px wide PNG).
DEFAULT_FRAMES = 8
MAX_FRAMES = 64
# Ground-truth conditions every kind provides, in the default order.
CONDITIONS = ("segment", "canny", "gray", "hands")


def kind_names() -> tuple[str, ...]:
    return tuple(_KIND_MODULES)


def get_kind(name: str):
    """The registered `Kind` called `name`; a `UserError` for unknown names."""
    if name not in _KIND_MODULES:
        raise UserError(f"unknown synth kind '{name}'; known: {', '.join(_KIND_MODULES)}")
    module, attribute = _KIND_MODULES[name]
    return getattr(importlib.import_module(module), attribute)


def parse_kinds(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise UserError("--kinds: give at least one kind, e.g. --kinds shapes,hands")
    for name in names:
        get_kind(name)
    if len(set(names)) != len(names):
        raise UserError(f"--kinds {text}: a kind is listed twice")
    return names


def default_conditions(kinds: tuple[str, ...]) -> tuple[str, ...]:
    """The kinds' own conditions, first kind first, without repeats (`shapes` -> segment, canny, gray)."""
    ordered: list[str] = []
    for name in kinds:
        ordered.extend(c for c in get_kind(name).conditions if c not in ordered)
    return tuple(ordered)


def parse_conditions(text: str | None, kinds: tuple[str, ...]) -> tuple[str, ...]:
    if text is None:
        return default_conditions(kinds)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown or not names:
        raise UserError(f"--conditions {text}: synth provides {', '.join(CONDITIONS)}")
    if len(set(names)) != len(names):
        raise UserError(f"--conditions {text}: a condition is listed twice")
    return names


def row_seed(seed: int, index: int) -> int:
    """The seed of row `index` in a dataset made with `seed` (63 bits, fits parquet's int64)."""
    import numpy as np

    state = np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def check_frames(frames: int) -> int:
    """`frames` if it is a valid clip length, else a one-line `UserError`."""
    if isinstance(frames, bool) or not isinstance(frames, int) or not 2 <= frames <= MAX_FRAMES:
        raise UserError(f"--frames {frames}: a clip has 2 to {MAX_FRAMES} frames")
    return frames


def check_clip_kinds(kinds: tuple[str, ...], frames: int | None) -> int | None:
    """The clip length of a dataset of `kinds`: None for still kinds, else `frames` (default 8), checked.

    Clip kinds and still kinds do not share a dataset (its rows would differ in columns), and `--frames`
    without a clip kind is refused rather than ignored.
    """
    clips = [name for name in kinds if get_kind(name).clip]
    stills = [name for name in kinds if name not in clips]
    if clips and stills:
        raise UserError(
            f"--kinds {','.join(kinds)}: {','.join(clips)} makes clips and cannot share a dataset with "
            f"still kinds ({','.join(stills)}); make two datasets"
        )
    if not clips:
        if frames is not None:
            raise UserError(f"--frames {frames}: only clip kinds use it (--kinds motion)")
        return None
    return check_frames(DEFAULT_FRAMES if frames is None else frames)


def render_scene(kind: str, seed: int, size: int, *, frames: int | None = None):
    """Render one `Scene` of `kind` from a row seed; clip kinds get `frames` frames (default 8)."""
    import numpy as np

    registered = get_kind(kind)
    frames = check_clip_kinds((kind,), frames)
    if registered.clip:
        return registered.render(np.random.default_rng(seed), size, frames)
    return registered.render(np.random.default_rng(seed), size)
