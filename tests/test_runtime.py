"""The persistent compilation cache: a second process loads compiled programs instead of compiling."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from controlsprint.runtime import compilation_cache_dir

PROBE = r"""
import json, jax, jax.numpy as jnp
from jax import monitoring
from controlsprint.runtime import enable_compilation_cache
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
directory = enable_compilation_cache()
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum() * 3.0)
f(jnp.ones((64, 64))).block_until_ready()
print(json.dumps({"dir": str(directory), "hits": events.count("/jax/compilation_cache/cache_hits")}))
"""


def _probe(env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_hits_the_persistent_cache(tmp_path):
    env = {"CONTROLSPRINT_COMPILATION_CACHE": str(tmp_path / "xla")}
    first = _probe(env)
    assert first["dir"] == str(tmp_path / "xla") and first["hits"] == 0
    assert any((tmp_path / "xla").iterdir()), "the first process must write compiled programs"
    second = _probe(env)
    assert second["hits"] >= 1


def test_cache_location_follows_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("CONTROLSPRINT_COMPILATION_CACHE", raising=False)
    monkeypatch.setenv("CONTROLSPRINT_CACHE_DIR", str(tmp_path / "root"))
    assert compilation_cache_dir() == tmp_path / "root" / "jax"
    assert compilation_cache_dir("off") is None
    monkeypatch.setenv("CONTROLSPRINT_COMPILATION_CACHE", "off")
    assert compilation_cache_dir() is None
    assert compilation_cache_dir(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"
