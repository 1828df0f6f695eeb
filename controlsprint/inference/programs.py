"""Sampling programs cached in memory and on disk, so that a new process skips tracing.

Tracing the sampling program through the Flax modules (text encoder, ControlNets, UNet, VAE) takes
seconds, and XLA's persistent compilation cache can only be consulted once a program is traced and
lowered. So the lowered program itself is kept too: `jax.export` serialises it (StableHLO bytecode,
no pickles) into `<compilation cache>/controlsprint/programs/<fingerprint>.stablehlo`. A second
process reads it back, and the persistent cache then hands it the compiled executable.

On one device the compiled executable is kept as well (`<fingerprint>.executable`: the bytes PJRT's
`serialize_executable` writes, behind a sha256 of them, no pickles), and a later process runs it
directly: it skips reading and lowering the StableHLO program again (which JAX needs to compute its
own cache key) and the cache lookup, ~0.7 s of a warm first image of ~3.5 s. Its first image costs
the model load, turning the stored bytes back into code, and the run. Only a program compiled in
this process is kept that way (see `_load_or_export`); one that XLA's cache served keeps the slower
path until the cache is cleared.

The fingerprint covers everything the program is built from: the options, the argument shapes,
dtypes and shardings (which include the scheduler's settings), the model configs, the device kind
and count, the host CPU's instruction set (an executable is machine code for it), XLA_FLAGS, the
jax version, and the source code of the inference, model and scheduler packages.
Programs that call back to Python (the per-step progress hook) cannot be serialised, as host
callbacks live in the process; those are traced in every process (see `InferenceCore.generate`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
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


@functools.cache
def _host_isa() -> str:
    """The CPU's feature flags (Linux), so executables built for one CPU never run on another."""
    import platform

    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return hashlib.sha256(line.encode()).hexdigest()[:16]
    return platform.processor() or platform.machine()


def fingerprint(description: Mapping[str, Any], leaves: Sequence[Any]) -> str:
    """A hash naming one program: `description` (options, configs) plus the arguments' layout."""
    import jaxlib

    devices = jax.local_devices()
    key = {
        **description,
        "arguments": [[list(x.shape), str(x.dtype), _sharding_key(x)] for x in leaves],
        "devices": [devices[0].platform, devices[0].device_kind, len(devices), _host_isa()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),  # flags change the code XLA generates
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
    from controlsprint.runtime import artifact_dir

    directory = artifact_dir("programs")
    if directory is None:
        return jax.jit(function)
    one_device = len(jax.devices()) == 1
    if one_device:
        loaded = _read_executable(directory / f"{name}.executable")
        if loaded is not None:
            return _direct_call(loaded)
    jitted = jax.jit(
        _read_or_export(directory / f"{name}.stablehlo", function, leaves).call, keep_unused=True
    )
    if not one_device:
        return jitted
    _count_cache_hits()
    hits_before = _cache_hits[0]
    compiled = jitted.lower(*leaves).compile()  # from XLA's persistent cache when it has it
    # XLA:CPU cannot serialise an executable that it deserialised (the copy lacks its kernels and
    # fails when run), so only a program compiled here is kept.
    if _cache_hits[0] == hits_before:
        _write_executable(directory / f"{name}.executable", compiled, len(leaves))
    return compiled


_cache_hits = [0]  # programs JAX read back from its persistent cache in this process


@functools.cache
def _count_cache_hits() -> None:
    def on_event(event: str, **_: Any) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            _cache_hits[0] += 1

    jax.monitoring.register_event_listener(on_event)


def _read_or_export(path: Path, function: Callable[..., Any], leaves: list):
    """The lowered program: from `path`, or traced and exported (and written to `path`)."""
    from jax import export

    from controlsprint.runtime import write_atomically

    if path.is_file():
        with contextlib.suppress(Exception):  # a damaged or foreign file is only a cache miss
            return export.deserialize(bytearray(path.read_bytes()))
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding) for x in leaves]
    jitted = jax.jit(function, in_shardings=tuple(x.sharding for x in leaves))
    exported = export.export(jitted)(*specs)
    with contextlib.suppress(OSError):  # an unwritable cache costs the next process a trace
        write_atomically(path, exported.serialize())
    return exported


_EXECUTABLE_MAGIC = b"controlsprint executable 1\n"


def _write_executable(path: Path, compiled, parameters: int) -> None:
    """Keep the compiled program's bytes, when it takes exactly the flat arguments and gives one array."""
    from controlsprint.runtime import write_atomically

    executable = getattr(getattr(compiled, "_executable", None), "xla_executable", None)
    if executable is None or len(executable.get_parameter_layouts()) != parameters:
        return
    if compiled.out_tree.num_leaves != 1:
        return
    with contextlib.suppress(Exception):  # a backend that cannot serialise, a full disk: no file
        data = executable.client.serialize_executable(executable)
        write_atomically(path, _EXECUTABLE_MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)


def _read_executable(path: Path):
    """The executable stored at `path`, or None. The checksum is verified before XLA sees the bytes:
    a truncated or damaged file is a cache miss, never a crash."""
    from jax._src.lib import xla_client

    try:
        blob = path.read_bytes()
    except OSError:
        return None
    header = len(_EXECUTABLE_MAGIC)
    digest, data = blob[header : header + 64], blob[header + 65 :]
    if blob[:header] != _EXECUTABLE_MAGIC or hashlib.sha256(data).hexdigest().encode() != digest:
        return None
    try:
        client = jax.devices()[0].client
        return client.deserialize_executable(
            data, executable_devices=xla_client.DeviceList(tuple(jax.devices()))
        )
    except Exception:  # noqa: BLE001  e.g. written by another jaxlib: recompile instead
        return None


def _direct_call(executable) -> Callable[..., Any]:
    """Call a one-device executable on flat arguments; its one output comes back as a jax.Array."""

    def run(*leaves):
        (output,) = executable.execute_sharded(list(leaves)).disassemble_into_single_device_arrays()
        return output[0]

    return run
