"""Training parallelism and exactness across processes: simulated devices, two real processes with
gloo collectives, and SIGKILL + --resume ending bit-identical to an uninterrupted run."""

from __future__ import annotations

import random
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


def test_sigkill_then_resume_is_bit_identical(data, tmp_path):
    # 30 steps: long enough that a kill up to 2 s after the first checkpoint still lands mid-run, and
    # past one epoch, so both runs (and the resumed one, encoding afresh) train on cached encodings
    steps = ["run.steps=30", "run.checkpoint_every=3", "run.async_checkpoints=true", "run.export=true"]
    reference = tmp_path / "reference"
    _finish(run_train_process(train_args(data, reference, *steps)))

    out = tmp_path / "killed"
    proc = run_train_process(train_args(data, out, *steps))
    # wait until at least one checkpoint exists, then kill at a random moment a little later
    deadline = time.time() + 600
    while time.time() < deadline and not any(p.name.isdigit() for p in (out / "checkpoints").glob("*")):
        time.sleep(0.2)
    time.sleep(random.uniform(0.0, 2.0))
    proc.kill()
    proc.communicate()
    assert proc.returncode == -9
    done = sorted(int(p.name) for p in (out / "checkpoints").glob("*") if p.name.isdigit())
    assert done and done[-1] < 30, f"killed too late to test anything: {done}"
    _finish(run_train_process([*train_args(data, out, *steps), "--resume"]))
    ours, theirs = exported_params(out), exported_params(reference)
    assert ours.keys() == theirs.keys()
    assert all((ours[k] == theirs[k]).all() for k in ours), (
        "resumed run must equal the uninterrupted one bit for bit"
    )
