"""bench/controlnet_gain.py on the embedded model: every gain measured with gain 1 as the reference, the
JSON line names the best, and eval's --scale is what the gain means at run time."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
controlnet_gain = pytest.importorskip("controlnet_gain")


@pytest.mark.slow
def test_sweep_reports_each_gain_against_gain_one(monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["controlnet_gain.py", "--controls", "canny", "--gains", "2", "--num", "2"]
    )
    controlnet_gain.main()
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    results = record["controls"]["canny"]["results"]
    assert set(results) == {"1.0", "2.0"} and record["seed"] == controlnet_gain.CALIBRATION_SEED
    best = record["controls"]["canny"]["best_gain"]
    assert results[str(best)]["with_control"] == max(r["with_control"] for r in results.values())
    # the ControlNet switched off is measured once and reported for every gain
    assert results["1.0"]["without_control"] == results["2.0"]["without_control"] is not None
    assert results["2.0"]["with_control"] != results["1.0"]["with_control"]
    assert any(line.startswith("canny gain 2: ") and "x gain 1's" in line for line in lines)
