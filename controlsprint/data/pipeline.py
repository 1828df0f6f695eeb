"""The resumable sharded writer behind `synth` and `prepare`.

A job turns N numbered inputs into rows. Input i always lands in shard i // shard_size, whatever the
number of workers, so a shard is a fixed unit of work: it is done when the manifest lists it. The parent
process cuts shards into chunks, hands chunks to a process pool (spawn context; each worker unpickles
the job's worker object once and builds its extractors on first use), takes results back in order,
writes each finished shard atomically and then records it in the manifest. After a crash, Ctrl-C or
SIGKILL, `--resume` redoes only the shards the manifest does not list; rows are a pure function of the
inputs, so the result is identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controlsprint.data import format as fmt
from controlsprint.errors import UserError

CHUNKS_IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class ChunkResult:
    """What a worker returns for a chunk: finished rows and the inputs it could not use."""

    rows: list[dict]
    rejects: list[dict] = field(default_factory=list)  # {"input": i, "source": label, "reason": text}


@dataclass(frozen=True)
class Job:
    out_dir: Path
    created_by: str  # the command, for the manifest
    num_inputs: int
    shard_size: int
    conditions: tuple[str, ...]
    extra_columns: Mapping[str, str]  # column name -> "string" | "int64"
    recipe: dict  # JSON-ready; everything that determines the rows. --resume requires the same recipe.
    load_chunk: Callable[[int, int], Any]  # parent side: inputs [start, end) -> payload for a worker
    worker: Callable[[Any], ChunkResult]  # picklable; called in worker processes
    chunk_size: int = 16
    unit: str = "img"


# ---------------------------------------------------------------------------------------------------
# Worker processes


_PROCESS_WORKER: Callable[[Any], ChunkResult] | None = None


def _init_worker_process(worker: Callable[[Any], ChunkResult]) -> None:
    import signal

    import cv2

    global _PROCESS_WORKER
    # Ctrl-C is the parent's to handle (it stops the pool and keeps finished shards).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Parallelism comes from processes; OpenCV's own threads would fight them for the same cores.
    cv2.setNumThreads(1)
    _PROCESS_WORKER = worker


def _run_in_worker_process(payload: Any) -> ChunkResult:
    assert _PROCESS_WORKER is not None, "worker process not initialised"
    return _PROCESS_WORKER(payload)


class _Deferred:
    def __init__(self, worker, payload):
        self.worker, self.payload = worker, payload

    def result(self) -> ChunkResult:
        return self.worker(self.payload)


class _InProcess:
    """--workers 1: run each chunk here when its result is asked for, behind the pool's interface."""

    def __init__(self, worker):
        self.worker = worker

    def submit(self, payload) -> _Deferred:
        return _Deferred(self.worker, payload)

    def shutdown(self, cancel: bool) -> None:
        pass


class _Pool:
    def __init__(self, worker, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker_process,
            initargs=(worker,),
        )

    def submit(self, payload):
        return self.executor.submit(_run_in_worker_process, payload)

    def shutdown(self, cancel: bool) -> None:
        self.executor.shutdown(wait=True, cancel_futures=cancel)


# ---------------------------------------------------------------------------------------------------
# Manifest bookkeeping


def _normalised(recipe: dict) -> dict:
    return json.loads(json.dumps(recipe))


def _new_manifest(job: Job, schema, num_shards: int) -> dict:
    return {
        "format": fmt.FORMAT_NAME,
        "format_version": fmt.FORMAT_VERSION,
        "created_by": job.created_by,
        "complete": False,
        "num_rows": 0,
        "num_rejected": 0,
        "num_inputs": job.num_inputs,
        "num_shards": num_shards,
        "shard_size": job.shard_size,
        "conditions": list(job.conditions),
        "default_condition": job.conditions[0],
        "condition_columns": fmt.condition_columns(job.conditions),
        "columns": [f.name for f in schema],
        "recipe": _normalised(job.recipe),
        "shards": [],
    }


def _open_manifest(job: Job, schema, num_shards: int, resume: bool) -> dict:
    out = job.out_dir
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a directory")
    manifest_path = out / fmt.MANIFEST_NAME
    if manifest_path.exists():
        manifest = fmt.load_manifest(out)
        state = (
            "complete"
            if manifest.get("complete")
            else f"{len(manifest['shards'])} of {manifest['num_shards']} shards"
        )
        if not resume:
            raise UserError(
                f"{out} already holds a dataset ({state}); pass --resume to continue it or choose a new --out"
            )
        if manifest.get("recipe") != _normalised(job.recipe):
            old, new = manifest.get("recipe") or {}, _normalised(job.recipe)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise UserError(f"--resume: {out} was made with different settings ({', '.join(changed)} differ)")
        return manifest
    if (out / fmt.DATA_SUBDIR).is_dir() and any((out / fmt.DATA_SUBDIR).glob("*.parquet")):
        raise UserError(f"{out} holds parquet files but no {fmt.MANIFEST_NAME}; choose an empty --out")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _new_manifest(job, schema, num_shards)
    fmt.write_json_atomic(manifest_path, manifest)  # from now on the directory is ours and resumable
    return manifest


def _record_shard(out: Path, manifest: dict, record: dict, rejects: list[dict]) -> None:
    # Order matters for crash safety: shard file (already renamed into place), rejects, then manifest.
    fmt.append_rejects(out, rejects)
    manifest["shards"] = sorted([*manifest["shards"], record], key=lambda s: s["index"])
    manifest["num_rows"] = sum(s["rows"] for s in manifest["shards"])
    manifest["num_rejected"] = sum(s["rejected"] for s in manifest["shards"])
    fmt.write_json_atomic(out / fmt.MANIFEST_NAME, manifest)


# ---------------------------------------------------------------------------------------------------
# The run


def _chunks(job: Job, shards: list[int]):
    for shard in shards:
        shard_end = min(job.num_inputs, (shard + 1) * job.shard_size)
        for start in range(shard * job.shard_size, shard_end, job.chunk_size):
            yield shard, start, min(start + job.chunk_size, shard_end), shard_end


def run_job(job: Job, *, workers: int = 1, resume: bool = False, progress: bool = True) -> dict:
    """Run (or continue) `job`; returns a summary: rows, rejected, shards, seconds, inputs_per_second."""
    from concurrent.futures.process import BrokenProcessPool

    from tqdm import tqdm

    if workers < 1:
        raise UserError(f"--workers {workers}: must be at least 1")
    if job.shard_size < 1:
        raise UserError(f"--shard-size {job.shard_size}: must be at least 1")
    schema = fmt.build_schema(job.conditions, job.extra_columns)
    num_shards = max(1, math.ceil(job.num_inputs / job.shard_size))
    manifest = _open_manifest(job, schema, num_shards, resume)
    done = {s["index"] for s in manifest["shards"]}
    fmt.keep_rejects_of_shards(job.out_dir, done)  # lines of unfinished shards are redone below
    pending = [s for s in range(num_shards) if s not in done]
    done_inputs = sum(s["inputs"][1] - s["inputs"][0] for s in manifest["shards"])

    started = time.perf_counter()
    bar = tqdm(
        total=job.num_inputs,
        initial=done_inputs,
        unit=job.unit,
        file=sys.stderr,
        disable=not progress,
        smoothing=0.1,
    )
    executor = _Pool(job.worker, workers) if workers > 1 and pending else _InProcess(job.worker)
    cancel = True
    writer: fmt.ShardWriter | None = None
    try:
        window = CHUNKS_IN_FLIGHT_PER_WORKER * workers
        tasks = _chunks(job, pending)
        in_flight: deque = deque()
        rejects: list[dict] = []
        while True:
            while len(in_flight) < window and (task := next(tasks, None)) is not None:
                in_flight.append((task, executor.submit(job.load_chunk(task[1], task[2]))))
            if not in_flight:
                break
            (shard, start, end, shard_end), future = in_flight.popleft()
            result = future.result()
            name = fmt.shard_name(shard, num_shards)
            if writer is None:
                writer = fmt.ShardWriter(job.out_dir / name, schema, job.conditions)
            writer.write(result.rows)
            rejects.extend({**r, "shard": shard} for r in result.rejects)
            bar.update(end - start)
            if end == shard_end:
                record = {"index": shard, "file": name, "inputs": [shard * job.shard_size, shard_end]}
                record.update(writer.finish(), rejected=len(rejects))
                writer = None
                _record_shard(job.out_dir, manifest, record, rejects)
                if manifest["num_rejected"]:
                    bar.set_postfix(rejected=manifest["num_rejected"], refresh=False)
                rejects = []
        cancel = False
    except BrokenProcessPool as err:
        raise UserError(
            f"a worker process died ({err}; out of memory?): {len(manifest['shards'])} of {num_shards} shards "
            f"are safe in {job.out_dir}; run the same command with --resume to continue"
        ) from None
    except KeyboardInterrupt:
        print(
            f"interrupted: {len(manifest['shards'])} of {num_shards} shards are safe in {job.out_dir}; "
            "run the same command with --resume to continue",
            file=sys.stderr,
        )
        raise
    finally:
        if writer is not None:
            writer.abort()
        bar.close()
        executor.shutdown(cancel=cancel)
    manifest["complete"] = True
    fmt.write_json_atomic(job.out_dir / fmt.MANIFEST_NAME, manifest)
    seconds = time.perf_counter() - started
    processed = job.num_inputs - done_inputs
    return {
        "rows": manifest["num_rows"],
        "rejected": manifest["num_rejected"],
        "shards": num_shards,
        "resumed_shards": len(done),
        "seconds": seconds,
        "inputs_per_second": processed / seconds if seconds > 0 else 0.0,
    }
