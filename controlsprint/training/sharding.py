"""Devices, processes and shardings: the mesh from the config, parameter rules, global batches.

The mesh has axes ("data", "fsdp"). The batch is split over both (every device sees different
samples); parameters and optimiser state are split over "fsdp" along their largest divisible axis
(and replicated over "data"). With fsdp=1 this is plain data parallelism.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from controlsprint.errors import UserError
from controlsprint.training.config import MeshSection

BATCH_AXES = ("data", "fsdp")
MIN_SHARDED_SIZE = 2**12  # smaller arrays are replicated: splitting them costs more than it saves


def initialize_distributed(
    coordinator: str | None, num_processes: int | None, process_id: int | None
) -> None:
    """Join a multi-process run: explicit flags (CPU/GPU hosts), or the TPU pod's own environment.

    Must run before anything touches a JAX device.
    """
    if coordinator:
        if num_processes is None or process_id is None:
            raise UserError("--coordinator needs --num-processes and --process-id")
        if not 0 <= process_id < num_processes:
            raise UserError(f"--process-id {process_id}: must be in [0, {num_processes})")
        # CPU processes talk through gloo; harmless on accelerators, which use their own collectives.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("MEGASCALE_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()  # a TPU pod slice: every worker runs the same command


def make_mesh(cfg: MeshSection) -> Mesh:
    devices = jax.devices()
    fsdp = cfg.fsdp
    data = len(devices) // fsdp if cfg.data == -1 else cfg.data
    if data * fsdp != len(devices):
        raise UserError(f"mesh data={cfg.data} x fsdp={fsdp} does not cover the {len(devices)} devices")
    return Mesh(np.asarray(devices).reshape(data, fsdp), ("data", "fsdp"))


def param_spec(shape: tuple[int, ...], fsdp: int) -> PartitionSpec:
    """Split the largest axis divisible by `fsdp` over "fsdp"; replicate small or indivisible arrays."""
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < MIN_SHARDED_SIZE:
        return PartitionSpec()
    candidates = [axis for axis in np.argsort(shape)[::-1] if shape[axis] % fsdp == 0]
    if not candidates:
        return PartitionSpec()
    spec = [None] * len(shape)
    spec[int(candidates[0])] = "fsdp"
    return PartitionSpec(*spec)


def tree_shardings(mesh: Mesh, tree: Any) -> Any:
    """NamedShardings for every array leaf of `tree` (abstract or concrete) by `param_spec`."""
    fsdp = mesh.shape["fsdp"]
    return jax.tree_util.tree_map(lambda leaf: NamedSharding(mesh, param_spec(tuple(leaf.shape), fsdp)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def global_batch(mesh: Mesh, local: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """This process's rows -> arrays spanning every process's rows, sharded over the batch axes."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def check_batch(batch_size: int, mesh: Mesh, grad_accum: int) -> None:
    devices = mesh.size
    if (batch_size // grad_accum) % devices:
        raise UserError(
            f"run.batch_size={batch_size} / optim.grad_accum={grad_accum} must divide by the {devices} devices"
        )
    if batch_size % jax.process_count():
        raise UserError(f"run.batch_size={batch_size} must divide by the {jax.process_count()} processes")
