"""Sampling programs cached in memory and on disk, so that a new process skips tracing.

Tracing the sampling program through the Flax modules (text encoder, ControlNets, UNet, VAE) takes
seconds, and XLA's persistent compilation cache can only be consulted once a program is traced and
lowered. So the lowered program itself is kept too: `jax.export` serialises it (StableHLO bytecode,
no pickles) into `<compilation cache>/controlsprint/programs/<fingerprint>.stablehlo`. A second
process reads it back, and the persistent cache then hands it the compiled executable: its first
image costs the model load, a cache read and the run.

The fingerprint covers everything the program is built from: the options, the argument shapes,
dtypes and shardings (which include the scheduler's settings), the model configs, the device kind
and count, the jax version, and the source code of the inference, model and scheduler packages.
Programs that call back to Python (the per-step progress hook) cannot be serialised, as host
callbacks live in the process; those are traced in every process (see `InferenceCore.generate`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax


@functools.cache
def _code_digest() -> str:
    from controlsprint.runtime import source_digest

    return source_digest("controlsprint.inference", "controlsprint.models", "controlsprint.schedulers")


def _sharding_key(leaf: Any) -> str:
    sharding = getattr(leaf, "sharding", None)
    spec = getattr(sharding, "spec", None)
    return str(spec) if spec is not None else type(sharding).__name__


def fingerprint(description: Mapping[str, Any], leaves: Sequence[Any]) -> str:
    """A hash naming one program: `description` (options, configs) plus the arguments' layout."""
    import jaxlib

    devices = jax.local_devices()
    key = {
        **description,
        "arguments": [[list(x.shape), str(x.dtype), _sharding_key(x)] for x in leaves],
        "devices": [devices[0].platform, devices[0].device_kind, len(devices)],
        "versions": [jax.__version__, jaxlib.__version__],
        "code": _code_digest(),
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


class ProgramCache:
    """`cache(description, function, leaves)` runs `function(*leaves)` as a compiled program, tracing it
    only when neither this process nor the disk cache has it yet."""

    def __init__(self) -> None:
        self._programs: dict[str, Callable[..., Any]] = {}

    def __call__(self, description: Mapping[str, Any], function: Callable[..., Any], leaves: list) -> Any:
        name = fingerprint(description, leaves)
        program = self._programs.get(name)
        if program is None:
            program = self._programs[name] = _load_or_export(name, function, leaves)
        return program(*leaves)

    def __len__(self) -> int:
        return len(self._programs)


def _load_or_export(name: str, function: Callable[..., Any], leaves: list) -> Callable[..., Any]:
    from jax import export

    from controlsprint.runtime import artifact_dir, write_atomically

    directory = artifact_dir("programs")
    path = directory / f"{name}.stablehlo" if directory is not None else None
    exported = None
    if path is not None and path.is_file():
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # noqa: BLE001  a damaged or foreign file is only a cache miss
            exported = None
    if exported is None:
        specs = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for x in leaves]
        jitted = jax.jit(function, in_shardings=tuple(x.sharding for x in leaves))
        exported = export.export(jitted)(*specs)
        if path is not None:
            with contextlib.suppress(OSError):  # an unwritable cache costs the next process a trace
                write_atomically(path, exported.serialize())
    return jax.jit(exported.call)
