"""Peak arithmetic rates, for model-FLOP-utilisation figures (the trainer's MFU, the benchmarks').

Accelerator chips have a datasheet peak. A CPU's depends on its generation far more than its core
count suggests: on the 2-core AMD EPYC machines of this project, a float32 2048^3 matmul ran at about
200 GFLOP/s in JAX in November 2026 (AVX-512 at 256-bit speed) and at 340-390 on a Zen 5 one (family
26, full-width AVX-512). So for CPUs the peak is measured, once per process, with the kind of work
that reaches it (one large matmul in XLA), rather than read from a table.
"""

from __future__ import annotations

import functools
import time

# Per chip, dense bf16, from the datasheets: TPU v4, H100 SXM.
ACCELERATOR_PEAK_FLOPS = {"tpu": 275e12, "gpu": 989e12}


@functools.cache
def cpu_matmul_peak_flops(size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of this process's XLA CPU backend on a float32 [size, size] matmul: best of `repeats`,
    after one untimed call (compilation). All the process's CPU devices share the same cores, so this
    is the rate of all of them together. Takes about a third of a second; cached."""
    import jax
    import jax.numpy as jnp

    cpu = jax.local_devices(backend="cpu")[0]  # in a multi-process run, one of this process's own
    a = jax.device_put(jnp.ones((size, size), jnp.float32), cpu)
    product = jax.jit(lambda x, y: x @ y)
    product(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        product(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def peak_flops(platform: str, num_devices: int, num_processes: int = 1) -> float:
    """The peak of `num_devices` devices of `platform` spread over `num_processes` processes: chips x
    their datasheet figure on accelerators; on CPU, this process's measured rate x the process count
    (each host's devices share its cores, however many devices XLA was told to make of them)."""
    if platform == "cpu":
        return cpu_matmul_peak_flops() * num_processes
    return ACCELERATOR_PEAK_FLOPS.get(platform, ACCELERATOR_PEAK_FLOPS["gpu"]) * num_devices
