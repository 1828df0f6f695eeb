"""Orbax checkpoints of the trained state (not the frozen base: it reloads from its folder).

A checkpoint holds step, params, optimiser state and EMA, plus a small JSON record (the config, data
position). Orbax writes each checkpoint to a temporary directory and renames it when complete, so a
run killed mid-save still restores from the newest complete one.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jax

from controlsprint.errors import UserError
from controlsprint.training.step import TrainState


def _trained(state: TrainState) -> dict[str, Any]:
    tree = {"step": state.step, "params": state.params, "opt_state": state.opt_state}
    if state.ema is not None:
        tree["ema"] = state.ema
    return tree


@functools.cache
def _save_replicated_arrays_from_one_replica() -> None:
    """orbax 0.12 slices replicated arrays between replicas inside `jax.sharding.set_mesh(...)`, which is
    not a context manager in jax 0.6; save each replicated array from its first replica instead."""
    import absl.logging
    import orbax.checkpoint as ocp

    absl.logging.set_verbosity(absl.logging.ERROR)  # the override is intended; keep its warning quiet
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True
    )


class Checkpointer:
    def __init__(self, directory: Path, *, keep: int, asynchronous: bool):
        import orbax.checkpoint as ocp

        _save_replicated_arrays_from_one_replica()
        self._ocp = ocp
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=asynchronous, create=True
        )
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "record"), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState, record: dict, *, wait: bool = False) -> None:
        step = int(jax.device_get(state.step))
        args = self._ocp.args.Composite(
            state=self._ocp.args.StandardSave(_trained(state)), record=self._ocp.args.JsonSave(record)
        )
        self.manager.save(step, args=args, force=True)
        if wait:
            self.manager.wait_until_finished()

    def restore(self, template: TrainState, step: int | None = None) -> tuple[TrainState, dict]:
        """Restore into `template`'s structure and shardings (its frozen part is kept as is)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise UserError(f"--resume: no checkpoint in {self.directory}")
        abstract = jax.tree_util.tree_map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), _trained(template)
        )
        try:
            restored = self.manager.restore(
                step,
                args=self._ocp.args.Composite(
                    state=self._ocp.args.StandardRestore(abstract), record=self._ocp.args.JsonRestore()
                ),
            )
        except (ValueError, KeyError, FileNotFoundError) as err:
            raise UserError(f"checkpoint {self.directory}/{step} does not match this config: {err}") from None
        tree = restored["state"]
        state = TrainState(tree["step"], tree["params"], tree["opt_state"], tree.get("ema"), template.frozen)
        return state, dict(restored["record"] or {})

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def describe(record: dict) -> str:
    return json.dumps({k: record[k] for k in ("step", "samples_seen") if k in record})
