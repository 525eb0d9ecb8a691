"""Training checkpoints for resuming: the whole train state plus a JSON side-car, via orbax.

    checkpointer = TrainCheckpointer(output_dir / "checkpoints", keep=3)
    checkpointer.save(step, {"params": ..., "opt_state": ..., "step": ..., "rng": ...},
                      {"data_position": position.to_dict()})
    restored = checkpointer.restore(target_state)       # None when there is nothing to resume
    if restored is not None:
        step, state, meta = restored

Layout: `<directory>/<step>/state` (orbax StandardSave of the state pytree) and
`<directory>/<step>/meta` (orbax JsonSave). Orbax writes each step to a temporary folder and
renames it when complete, so a process killed mid-save leaves no half-written step behind,
only a temporary folder that is ignored and cleaned up. Ctrl-C during a save lets the save
finish, then raises KeyboardInterrupt: the step is kept, and orbax's writer threads are not
cut off mid-write (they would print tracebacks as the interpreter exits).

What `restore` does with the latest step, in this order:
- it does not fit the model (another param tree, another shape): `RunMismatchError`. That is
  another run, not damage; nothing on disk is touched.
- it cannot be read (a file deleted or truncated inside it): damage. The step folder is
  moved aside to `<step>.damaged` (a warning says where) and the step before is tried, so
  the run carries on and can write that step again.
- reading fails for a reason that is not the checkpoint's (permission denied, out of
  memory): the error is raised.

These are *training* checkpoints (optimiser state included, the layout of this code's
param tree). The exported model for from_pretrained is written by `save_pretrained`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath

from ..errors import RunMismatchError
from ..runtime import sigint_handler

# Failures of the machine, not of the checkpoint's bytes: never a reason to discard a step.
_NOT_DAMAGE = (PermissionError, MemoryError, KeyboardInterrupt)


class TrainCheckpointer:
    """Saves and restores (step, state pytree, meta dict) in `directory`; keeps the last `keep`.

    Creating one touches nothing on disk; the folder is made by the first `save`.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep={keep}; expected at least 1 checkpoint to keep")
        self.directory = os.path.abspath(os.fspath(directory))
        self.keep = keep
        self._manager: ocp.CheckpointManager | None = None

    def _open(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep,
                create=True,
                cleanup_tmp_directories=True,  # leftovers of a process killed mid-save
                enable_async_checkpointing=False,  # save() returns once the step is on disk
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))
        return self._manager

    def all_steps(self) -> list[int]:
        """The steps saved in `directory` (complete ones: orbax's temporary folders are not steps)."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(name) for name in os.listdir(self.directory)
                      if name.isdigit() and os.path.isdir(os.path.join(self.directory, name)))

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Writes step `step` atomically and blocks until done; drops steps beyond `keep`."""
        manager = self._open()
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        with interrupt_after():
            manager.save(int(step), args=args, force=True)
            manager.wait_until_finished()

    def restore(self, target: Any) -> tuple[int, Any, dict] | None:
        """The latest readable checkpoint as (step, state, meta), or None if there is none.

        `target` is a pytree like the saved state (arrays or jax.ShapeDtypeStruct, with
        shardings for a sharded restore). Raises RunMismatchError when the latest step holds
        another param tree or other shapes; moves unreadable steps aside (see the module
        docstring) and falls back to the one before.
        """
        for step in reversed(self.all_steps()):
            folder = os.path.join(self.directory, str(step))
            try:
                saved = _saved_leaves(folder)
            except _NOT_DAMAGE:
                raise
            except Exception as error:  # noqa: BLE001 - orbax/tensorstore raise many kinds for damage
                self._set_aside(step, error)
                continue
            _check_fits(saved, _leaves(target), folder)
            try:
                restored = self._open().restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
            except _NOT_DAMAGE:
                raise
            except Exception as error:  # noqa: BLE001
                self._set_aside(step, error)
                continue
            return step, restored["state"], dict(restored["meta"] or {})
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        """Move a damaged step out of the way (never delete it) and say where it went. With
        several processes, process 0 moves it; the others pass over it alike."""
        source = os.path.join(self.directory, str(step))
        target, n = f"{source}.damaged", 1
        while os.path.exists(target):
            n += 1
            target = f"{source}.damaged-{n}"
        if jax.process_index() == 0:
            os.replace(source, target)
        if self._manager is not None:
            self._manager.reload()
        detail = str(error).split(" See full TensorStore details")[0].splitlines()
        reason = f"{type(error).__name__}: {detail[0][:200]}" if detail else type(error).__name__
        warnings.warn(f"checkpoint step {step} cannot be restored ({reason}); moved it to {target} "
                      "and falling back to the step before", RuntimeWarning, stacklevel=3)

    def close(self) -> None:
        """Finish any save in flight and release orbax's manager; safe to call twice."""
        if self._manager is not None:
            self._manager.close()
            self._manager = None


@contextlib.contextmanager
def interrupt_after():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block until the block is done, then
    raise KeyboardInterrupt. Only in the main thread, where Python handles signals; the
    previous handler is back in place on exit."""
    received = []
    with sigint_handler(lambda signum, frame: received.append(signum), replaces=lambda previous: True):
        yield
    if received:
        raise KeyboardInterrupt


def _path_name(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _leaves(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """{"params/encoder/...": (shape, dtype)} of a state pytree or orbax's metadata of one."""
    return {_path_name(path): (tuple(leaf.shape), str(leaf.dtype))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _saved_leaves(folder: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """The saved state's leaves, from the step's metadata alone (no array is read). Raises
    (damage) when the metadata or the meta item is missing or unreadable."""
    if not os.path.isfile(os.path.join(folder, "meta", "metadata")):
        raise FileNotFoundError(f"{folder}/meta/metadata is missing")
    metadata = ocp.StandardCheckpointHandler().metadata(epath.Path(folder) / "state")
    return _leaves(metadata.tree if hasattr(metadata, "tree") else metadata)


def _check_fits(saved: dict, wanted: dict, folder: str) -> None:
    """RunMismatchError naming the first leaf the saved state and the target disagree on."""
    for name in sorted(set(saved) | set(wanted), key=lambda name: (not name.startswith("params/"), name)):
        if name not in wanted:
            raise RunMismatchError(f"checkpoint {folder} holds {name} {saved[name][0]}, which this run's model "
                                   "and optimiser do not have; it is another run's checkpoint")
        if name not in saved:
            raise RunMismatchError(f"checkpoint {folder} has no {name}, which this run needs "
                                   f"({wanted[name][0]}); it is another run's checkpoint")
        if saved[name] != wanted[name]:
            (saved_shape, saved_dtype), (shape, dtype) = saved[name], wanted[name]
            raise RunMismatchError(f"checkpoint {folder} holds {name} of shape {saved_shape} {saved_dtype}; "
                                   f"this run's model needs {shape} {dtype}")
