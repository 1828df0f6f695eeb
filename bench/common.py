"""Shared helpers for the benchmarks: alternate timing, medians, machine facts, the final JSON line."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def alternate(
    runs: Mapping[str, Callable[[], object]], repeats: int, *, verbose: bool = True, settle: bool = False
) -> dict[str, float]:
    """Run each callable `repeats` times, interleaved (A B A B ...), flipping the order every round so
    neither side always runs on a warmer machine; returns the median seconds of each.

    `settle`: one untimed call right before each timed one (A A B B ...), so each side is timed in its
    own steady state rather than right after the other. For programs that stream gigabytes of weights
    the one that follows pays for the other's traces in the caches and TLBs (measured for SD1.5: up to
    0.5 s of 7 s), which a user running one of them never sees."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            if settle:
                runs[name]()
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
            if verbose:
                print(f"  round {round_ + 1}/{repeats} {name}: {times[name][-1]:.3f} s", flush=True)
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> dict[str, object]:
    """Date, machine and the load average (1, 5, 15 min) when called: other jobs on the cores show here."""
    return {
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def cpu_model() -> str:
    """The CPU's name and generation from /proc/cpuinfo ("AMD EPYC family 26 model 2"), or the platform's
    word for it elsewhere: figures move with the generation (see cpu_peak_gflops)."""
    try:
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (
                line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines()
            )
            if value
        )
    except OSError:
        return platform.processor() or platform.machine()
    return f"{fields.get('model name', '?')} family {fields.get('cpu family', '?')} model {fields.get('model', '?')}"


def cpu_peak_gflops() -> float:
    """The machine's fp32 matmul peak in GFLOP/s as JAX reaches it (controlsprint.hardware: measured,
    cached), for MFU figures. Call it at a benchmark's start, on an idle process: measured inside the
    SD1.5 benchmark after its timed rounds, the same product ran at ~220 instead of ~370 GFLOP/s
    (cause not found)."""
    from controlsprint.hardware import cpu_matmul_peak_flops

    return cpu_matmul_peak_flops(repeats=10) / 1e9


def find_photos(explicit: str | None = None) -> Path:
    """The real test photos: `explicit`, else $CONTROLSPRINT_TESTDATA, else shared/testdata/images above
    the checkout (where the workplace keeps them)."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("CONTROLSPRINT_TESTDATA"):
        return Path(env)
    for parent in REPO.parents:
        if (candidate := parent / "shared" / "testdata" / "images").is_dir():
            return candidate
    raise SystemExit("test photos not found: pass --photos DIR or set CONTROLSPRINT_TESTDATA")


def emit(record: Mapping[str, object]) -> None:
    """The one JSON line every benchmark ends with."""
    print(json.dumps({**record, **machine()}, sort_keys=False), flush=True)
