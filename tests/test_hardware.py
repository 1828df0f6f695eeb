"""Peak rates behind the MFU figures: measured on CPU, datasheet per chip on accelerators."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import pytest

from controlsprint.hardware import ACCELERATOR_PEAK_FLOPS, cpu_matmul_peak_flops, peak_flops


def test_cpu_peak_is_the_rate_of_a_large_matmul_timed_here():
    peak = cpu_matmul_peak_flops()
    assert 1e9 < peak < 1e14  # a real CPU rate, whatever the generation
    # An independent timing of a different-size product cannot beat the measured peak by much (it is
    # the best of several runs of the kind of work that reaches the machine's peak).
    a = jnp.ones((1536, 1536), jnp.float32)
    product = jax.jit(lambda x: x @ x)
    product(a).block_until_ready()
    best = min(_seconds(lambda: product(a).block_until_ready()) for _ in range(5))
    assert 2 * 1536**3 / best < 1.5 * peak
    assert cpu_matmul_peak_flops() == peak  # cached: one probe per process


def test_cpu_peak_counts_processes_not_devices():
    # Simulated devices of one process share its cores; each host process brings its own.
    one = peak_flops("cpu", 1)
    assert peak_flops("cpu", 8) == one
    assert peak_flops("cpu", 8, num_processes=2) == 2 * one


@pytest.mark.parametrize("platform", ["tpu", "gpu"])
def test_accelerator_peak_is_per_chip(platform):
    assert peak_flops(platform, 8, num_processes=2) == 8 * ACCELERATOR_PEAK_FLOPS[platform]


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
