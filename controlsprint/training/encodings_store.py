"""Frozen encodings kept on disk (`data.encodings_dir`), so runs on the same dataset and frozen encoders
encode it once between them.

Three ControlNets trained on one dataset from one base (the embedded model's canny, segment and gray)
would each run the same VAE and text-encoder pass over the same rows (about 1.6 minutes each on one
core for 6k rows at 128 px). With `data.encodings_dir` set, the first run writes its pass to
`<dir>/<key>.npz`; a later run whose inputs give the same key reads it instead. The key is a hash of
everything the pass reads: the frozen weights, the token ids of every caption, the resolution, and the
dataset's manifest and shard files (size and modification time). A run that starts while another is
encoding the same key waits for it (a file lock) rather than doing the work twice.

Single-process runs only: processes of a multi-host run encode their slices together, and a file one
host sees may be missing on another, so those runs keep the encodings in memory as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from controlsprint.errors import UserError
from controlsprint.training.encodings import EncodingCache

_FIELDS = ("latent_mean", "latent_logvar", "text", "empty_text")
FORMAT = 1  # bump when what a file holds changes: old files then simply stop matching


def store_key(frozen: dict, dataset, token_ids: np.ndarray, resolution: int) -> str:
    """Hex digest naming the encodings of `dataset` through the `frozen` encoders."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": FORMAT, "resolution": resolution, "rows": len(dataset)}).encode())
    digest.update(json.dumps(dataset.manifest, sort_keys=True).encode())
    for shard in dataset.manifest["shards"]:
        stat = (Path(dataset.directory) / shard["file"]).stat()
        digest.update(f"{shard['file']}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for name in ("vae", "text_encoder"):  # a text encoder that trains is not in `frozen`, nor in the file
        if name not in frozen:
            continue
        leaves, _ = jax.tree_util.tree_flatten_with_path(frozen[name])
        for path, leaf in leaves:
            array = np.ascontiguousarray(np.asarray(leaf))
            digest.update(f"{name}{jax.tree_util.keystr(path)}{array.dtype}{array.shape}".encode())
            digest.update(array.tobytes())
    digest.update(np.ascontiguousarray(token_ids, np.int64).tobytes())
    return digest.hexdigest()[:32]


def load(path: Path) -> EncodingCache | None:
    """The encodings stored at `path`, or None when there is no usable file there."""
    if not path.is_file():
        return None
    start = time.perf_counter()
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] if name in stored.files else None for name in _FIELDS}
    except (OSError, ValueError, KeyError):  # cut short or not ours: encode again and overwrite it
        return None
    if arrays["latent_mean"] is None or arrays["latent_logvar"] is None:
        return None
    return EncodingCache(**arrays, seconds=time.perf_counter() - start)


def save(path: Path, cache: EncodingCache) -> None:
    """Write atomically (temporary file, then rename): a reader never sees half a file."""
    arrays = {name: getattr(cache, name) for name in _FIELDS if getattr(cache, name) is not None}
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")
    np.savez(partial, **arrays)
    os.replace(partial, path)


@contextlib.contextmanager
def _locked(path: Path):
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_stored(directory: str | Path, key: str) -> EncodingCache | None:
    """The encodings stored under `key`, waiting for a run that is writing them; None if there are none
    (nothing is encoded or created here: for runs too short to pay for a pass of their own)."""
    path = Path(directory) / f"{key}.npz"
    if not path.parent.is_dir():
        return None
    with _locked(path):
        return load(path)


def load_or_encode(directory: str | Path, key: str, encode) -> tuple[EncodingCache, bool]:
    """(the encodings, whether they were read from disk): read `<directory>/<key>.npz`, or run
    `encode()` and store its result there for the next run."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"data.encodings_dir {directory}: cannot create it ({error.strerror})") from None
    path = directory / f"{key}.npz"
    with _locked(path):  # a second run on the same key waits here, then reads what the first wrote
        cache = load(path)
        if cache is not None:
            return cache, True
        cache = encode()
        try:
            save(path, cache)
        except OSError as error:  # a full disk costs the next run its shortcut, not this run its work
            print(f"data.encodings_dir {directory}: could not store the encodings ({error.strerror})")
        return cache, False
