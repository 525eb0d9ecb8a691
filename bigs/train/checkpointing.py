"""Training checkpoints for --resume: the whole train state plus a JSON side-car, via orbax.

    checkpointer = TrainCheckpointer(output_dir / "checkpoints", keep=3)
    checkpointer.save(step, {"params": ..., "opt_state": ..., "step": ..., "rng": ...},
                      {"data_position": position.to_dict()})
    restored = checkpointer.restore(target_state)       # None when there is nothing to resume
    if restored is not None:
        step, state, meta = restored

Layout: `<directory>/<step>/state` (orbax StandardSave of the state pytree, one array
file set per leaf) and `<directory>/<step>/meta` (orbax JsonSave). Orbax writes each step
to a temporary folder and renames it when complete, so a process killed mid-save leaves
no half-written step behind, only a temporary folder that is ignored and cleaned up.

These are *training* checkpoints (optimiser state included, the layout of this code's
param tree). The exported model for from_pretrained is written by `save_pretrained`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import orbax.checkpoint as ocp


class TrainCheckpointer:
    """Saves and restores (step, state pytree, meta dict); keeps the last `keep` steps."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep={keep}; expected at least 1 checkpoint to keep")
        self.directory = os.path.abspath(os.fspath(directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            cleanup_tmp_directories=True,  # leftovers of a process killed mid-save
            enable_async_checkpointing=False,  # save() returns once the step is on disk
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Writes step `step` atomically and blocks until done; drops steps beyond `keep`."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self._manager.save(int(step), args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, target: Any) -> tuple[int, Any, dict] | None:
        """The latest readable checkpoint as (step, state, meta), or None if there is none.

        `target` is a pytree like the saved state (arrays or jax.ShapeDtypeStruct, with
        shardings for a sharded restore). A step that cannot be read (a file deleted or
        truncated inside it) is skipped with a warning, falling back to the one before.
        """
        self._manager.reload()
        for step in reversed(self.all_steps()):
            try:
                restored = self._manager.restore(
                    step,
                    args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
                )
            except Exception as error:  # orbax/tensorstore raise many kinds for a damaged step
                warnings.warn(
                    f"checkpoint step {step} in {self.directory!r} cannot be restored "
                    f"({type(error).__name__}: {str(error)[:300]}); falling back to an earlier one",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            return step, restored["state"], dict(restored["meta"] or {})
        return None

    def close(self) -> None:
        self._manager.close()
