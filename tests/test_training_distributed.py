"""Training parallelism and exactness across processes: simulated devices, two real processes with
gloo collectives, and SIGKILL + --resume ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import random
import shutil
import socket
import time

import pytest

from tests.training_helpers import (
    exported_params,
    make_dataset,
    max_difference,
    run_train_process,
    train_args,
)

pytestmark = pytest.mark.slow

# 13 steps of 4 see more samples than the 48 rows, so the runs train on cached encodings (encodings.py)
STEPS = ["run.steps=13", "run.checkpoint_every=4", "data.caption_dropout=0.0"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("synth") / "tiny")


@pytest.fixture(scope="module")
def single_device_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    proc = run_train_process(train_args(data, out, *STEPS))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    return out


def _finish(proc, timeout=900):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


def test_four_simulated_devices_match_one(data, single_device_run, tmp_path):
    out = tmp_path / "four"
    _finish(run_train_process(train_args(data, out, *STEPS), devices=4))
    assert max_difference(exported_params(single_device_run), exported_params(out)) < 1e-5


def test_fsdp_sharding_matches_one_device(data, single_device_run, tmp_path):
    out = tmp_path / "fsdp"
    _finish(run_train_process(train_args(data, out, *STEPS, "mesh.fsdp=2"), devices=4))
    assert max_difference(exported_params(single_device_run), exported_params(out)) < 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_with_gloo_match_one(data, single_device_run, tmp_path):
    out = tmp_path / "two"
    port = _free_port()
    procs = [
        run_train_process(
            [
                *train_args(data, out, *STEPS),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(rank),
            ]
        )  # fmt: skip
        for rank in range(2)
    ]
    for proc in procs:
        _finish(proc)
    assert max_difference(exported_params(single_device_run), exported_params(out)) < 1e-5


def _checkpoints(out) -> list[int]:
    return sorted(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())


def _kill_mid_run(data, out, steps: list[str], total: int) -> list[int]:
    """Start a run and SIGKILL it at a random moment after a random checkpoint (3 to total - 6), so
    the kill can land mid-step or mid-write; the checkpoints it left. On a machine where the steps
    outrun the polling the run may finish first: then it is started again, killed at its first."""
    for attempt in range(3):
        shutil.rmtree(out, ignore_errors=True)
        proc = run_train_process(train_args(data, out, *steps))
        target = random.choice(range(3, total - 5, 3)) if attempt == 0 else 3
        deadline = time.time() + 600
        while time.time() < deadline and not any(step >= target for step in _checkpoints(out)):
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, 0.3))
        proc.kill()
        proc.communicate()
        assert proc.returncode == -9
        done = _checkpoints(out)
        if done and done[-1] < total:
            return done
    raise AssertionError(f"three runs finished before their kill: {done}")


def test_sigkill_then_resume_is_bit_identical(data, tmp_path):
    # 30 steps: past one epoch, so both runs (and the resumed one, encoding afresh) train on cached
    # encodings
    steps = ["run.steps=30", "run.checkpoint_every=3", "run.async_checkpoints=true", "run.export=true"]
    reference = tmp_path / "reference"
    _finish(run_train_process(train_args(data, reference, *steps)))

    out = tmp_path / "killed"
    assert _kill_mid_run(data, out, steps, 30)
    _finish(run_train_process([*train_args(data, out, *steps), "--resume"]))
    ours, theirs = exported_params(out), exported_params(reference)
    assert ours.keys() == theirs.keys()
    assert all((ours[k] == theirs[k]).all() for k in ours), (
        "resumed run must equal the uninterrupted one bit for bit"
    )
