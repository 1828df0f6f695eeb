"""bench/guidance_sweep.py on the embedded model: every guidance scale measured against diffusers' 7.5
in the same run, the JSON line names the best, and the model's recorded scale is what eval uses."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
guidance_sweep = pytest.importorskip("guidance_sweep")


@pytest.mark.slow
def test_sweep_reports_each_guidance_against_the_reference(monkeypatch, capsys):
    from controlsprint.evaluation.evaluate import evaluate
    from controlsprint.inference.loading import load_core
    from controlsprint.training.presets import GUIDANCE

    monkeypatch.setattr(
        sys, "argv", ["guidance_sweep.py", "--controls", "canny", "--guidances", str(GUIDANCE), "--num", "2"]
    )
    guidance_sweep.main()
    lines = capsys.readouterr().out.strip().splitlines()
    record = json.loads(lines[-1])
    results = record["controls"]["canny"]["results"]
    assert set(results) == {str(float(GUIDANCE)), "7.5"} and record["model_guidance"] == GUIDANCE
    best = record["controls"]["canny"]["best_guidance"]
    assert results[str(best)]["with_control"] == max(r["with_control"] for r in results.values())
    assert any(
        line.startswith(f"canny guidance {GUIDANCE:g}: ") and "x guidance 7.5's" in line for line in lines
    )
    # eval without --guidance samples at the model's recorded scale: the same figure
    default = evaluate(load_core(None), "canny", num=2, seed=record["seed"], without_control=False)
    assert default["guidance"] == GUIDANCE
    assert default["with_control"] == results[str(float(GUIDANCE))]["with_control"]
