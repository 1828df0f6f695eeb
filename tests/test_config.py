"""The config system: typed `--set` overrides, unknown keys rejected, dict round trips, config files."""

from __future__ import annotations

import dataclasses
from typing import Literal

import pytest

from controlsprint.config import from_dict, load_config_module, override, to_dict
from controlsprint.errors import UserError


@dataclasses.dataclass(frozen=True)
class Optim:
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"


@dataclasses.dataclass(frozen=True)
class Experiment:
    name: str = "tiny"
    steps: int = 10
    ema: bool = False
    channels: tuple[int, ...] = (32, 64)
    seed: int | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_override_parses_each_type_by_declared_field():
    cfg = override(
        Experiment(),
        [
            "steps=1_000",
            "ema=yes",
            "channels=8,16,32",
            "seed=7",
            "optim.learning_rate=3e-4",
            "optim.schedule=cosine",
            "name=a=b",
        ],
    )
    assert cfg.steps == 1000 and cfg.ema is True and cfg.channels == (8, 16, 32)
    assert cfg.seed == 7 and cfg.optim.learning_rate == pytest.approx(3e-4)
    assert cfg.optim.schedule == "cosine" and cfg.name == "a=b"
    assert Experiment().steps == 10, "overrides must not mutate the original"
    assert override(cfg, ["seed=none"]).seed is None


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("stepz=3", "unknown config key 'stepz'; did you mean 'steps'?"),
        ("optim.lr=3", "unknown config key 'optim.lr'"),
        ("steps.x=3", "'steps' is a value"),
        ("steps=ten", "expected an integer"),
        ("ema=maybe", "expected true or false"),
        ("optim.schedule=linear", "must be one of constant, cosine"),
        ("optim=3", "group of settings"),
        ("steps", "expected key=value"),
    ],
)
def test_override_rejects_bad_keys_and_values(assignment, message):
    with pytest.raises(UserError, match=message.replace("?", r"\?").replace("(", r"\(")):
        override(Experiment(), [assignment])


def test_dict_round_trip_and_unknown_keys():
    cfg = override(Experiment(), ["channels=4,8", "optim.warmup_steps=5"])
    data = to_dict(cfg)
    assert data["channels"] == [4, 8] and data["optim"]["warmup_steps"] == 5
    assert from_dict(Experiment, data) == cfg
    with pytest.raises(UserError, match="unknown key"):
        from_dict(Experiment, {**data, "surprise": 1})
    # diffusers config.json bookkeeping keys and unknown keys are tolerated when not strict
    assert from_dict(Experiment, {**data, "_class_name": "X", "other": 1}, strict=False) == cfg


def test_load_config_module_by_name_and_path(tmp_path):
    (tmp_path / "small_run.py").write_text(
        "from dataclasses import dataclass\n"
        "@dataclass(frozen=True)\nclass C:\n    steps: int = 3\n"
        "def get_config():\n    return C()\n"
    )
    (tmp_path / "broken.py").write_text("x = 1\n")
    assert load_config_module("small-run", [tmp_path]).get_config().steps == 3
    assert load_config_module(str(tmp_path / "small_run.py")).get_config().steps == 3
    with pytest.raises(UserError, match="config 'nope' not found; known configs: broken, small_run"):
        load_config_module("nope", [tmp_path])
    with pytest.raises(UserError, match="no get_config"):
        load_config_module("broken", [tmp_path])
