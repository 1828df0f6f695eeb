"""train/build_default_model.sh's stage runner: the ControlNets and the decoder fine-tune run in the lanes
presets.LANES names, after the UNet, and every stage's time (and the lanes' wall time) lands in
build_times.json.
A stand-in `controlsprint` on PATH records the calls, so no training runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from controlsprint.training.presets import CONTROLNET_DATA, LANES

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "build_default_model.sh"


def _stage_runner() -> str:
    """The script's lines from the `timed` helper through the ControlNet lanes (no synth, no export)."""
    lines = SCRIPT.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("timed() {"))
    end = next(i for i, line in enumerate(lines) if line.startswith("timed lanes lanes"))
    return "\n".join(["set -euo pipefail", *lines[start : end + 1]])


def test_lanes_run_every_controlnet_and_the_decoder_after_the_unet_and_record_times(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "controlsprint"
    fake.write_text('#!/bin/sh\necho "$*" >> "$CALLS"\n')
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls.txt"),
    }
    (tmp_path / "runner.sh").write_text(_stage_runner())
    subprocess.run(["bash", "runner.sh"], cwd=tmp_path, env=env, check=True, timeout=120)

    calls = (tmp_path / "calls.txt").read_text().split("\n")[:-1]
    assert calls[:2] == ["train default-vae", "train default-unet"]
    assert sorted(calls[2:]) == sorted(f"train default-{c}" for c in (*CONTROLNET_DATA, "decoder"))
    for lane in LANES:  # within a lane, stages run in the order given
        positions = [calls.index(f"train default-{c}") for c in lane]
        assert positions == sorted(positions)
    times = json.loads((tmp_path / "build_times.json").read_text())
    assert set(times) == {"vae", "unet", "lanes", "decoder", *CONTROLNET_DATA}
    assert all(isinstance(v, int) and v >= 0 for v in times.values())


def test_every_controlnet_and_the_decoder_is_in_exactly_one_lane():
    laned = [stage for lane in LANES for stage in lane]
    assert sorted(laned) == sorted((*CONTROLNET_DATA, "decoder"))


def test_export_bakes_the_preset_gains_and_records_the_guidance(tmp_path):
    from controlsprint.training.presets import GAINS, GUIDANCE

    lines = SCRIPT.read_text().splitlines()
    start = lines.index("args=()")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("controlsprint export"))
    script = "\n".join(["set -euo pipefail", *lines[start:end], 'printf "%s\\n" "${args[@]}"'])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        ["bash", "-c", script], env=env, check=True, capture_output=True, text=True, timeout=60
    )
    args = out.stdout.split("\n")[:-1]
    gains = [args[i + 1] for i, flag in enumerate(args) if flag == "--controlnet-gain"]
    assert gains == [f"{name}={gain:g}" for name, gain in GAINS.items() if gain != 1]
    assert gains, "the presets bake at least one gain"
    assert sum(flag == "--add-controlnet" for flag in args) == len(CONTROLNET_DATA)
    assert [args[i + 1] for i, flag in enumerate(args) if flag == "--guidance-scale"] == [str(GUIDANCE)]
