"""Process-wide JAX setup: the persistent compilation cache.

Compiling the sampling loop or the train step takes seconds to minutes; XLA's persistent cache
stores the compiled programs on disk so a second process (a new `controlsprint generate`, a demo
restart) loads them instead of compiling again.

The cache lives in `$CONTROLSPRINT_CACHE_DIR/jax` (default: `$XDG_CACHE_HOME/controlsprint/jax`,
that is `~/.cache/controlsprint/jax`). `CONTROLSPRINT_COMPILATION_CACHE=off` turns it off, and
`CONTROLSPRINT_COMPILATION_CACHE=/some/dir` puts it elsewhere; the CLI's `--compile-cache` sets the same.
"""

from __future__ import annotations

import os
from pathlib import Path

from controlsprint.errors import UserError

_OFF = {"off", "0", "false", "no", "none"}


def cache_root() -> Path:
    """The user cache directory of controlsprint."""
    if env := os.environ.get("CONTROLSPRINT_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "controlsprint"


def compilation_cache_dir(setting: str | None = None) -> Path | None:
    """Where the compilation cache goes for `setting` (or the environment), None when turned off."""
    setting = setting if setting is not None else os.environ.get("CONTROLSPRINT_COMPILATION_CACHE", "")
    if setting.strip().lower() in _OFF:
        return None
    return Path(setting).expanduser() if setting.strip() else cache_root() / "jax"


def enable_compilation_cache(setting: str | None = None) -> Path | None:
    """Point JAX's persistent compilation cache at our cache dir; returns the dir or None if off.

    Safe to call more than once. Imports jax, so call it only from code paths that use jax.
    """
    directory = compilation_cache_dir(setting)
    if directory is None:
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"compilation cache dir {directory}: {err.strerror}") from None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Cache every program, not just ones that took over a second to compile: on CPU many of ours
    # compile in under a second each but there are dozens of them in a demo.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def artifact_dir(kind: str) -> Path | None:
    """`<compilation cache>/controlsprint/<kind>`: controlsprint's own cached artifacts (traced sampling
    programs, parameter shapes), kept with JAX's compiled programs and turned off with them.

    None when the compilation cache is off or the folder cannot be made (a cache is never an error).
    """
    import jax

    base = jax.config.jax_compilation_cache_dir
    if not base:
        return None
    directory = Path(base) / "controlsprint" / kind
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return directory


def source_digest(*packages: str) -> str:
    """A hash of the Python sources of `packages` (e.g. "controlsprint.models"): cached artifacts derived
    from that code carry it in their key, so editing the code never serves a stale artifact."""
    import hashlib
    import importlib

    digest = hashlib.sha256()
    for name in packages:
        folder = Path(importlib.import_module(name).__file__).parent
        for path in sorted(folder.rglob("*.py")):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file, so readers never see half a file."""
    import tempfile

    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
        f.write(data)
    os.replace(f.name, path)
