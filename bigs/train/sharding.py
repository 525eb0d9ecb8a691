"""Placing a training run on many devices with jax.sharding.

The mesh has two axes, `("data", "fsdp")`:

  data   pure data parallelism: each device holds all parameters, a slice of the batch.
  fsdp   data parallelism *and* parameter sharding (FSDP / ZeRO-3 style): the batch is split
         over it too, and each big parameter (and its optimiser moments) is split along its
         largest dimension divisible by the axis size; XLA gathers the pieces when needed.

So `--mesh 4x1` is plain data parallel on 4 devices, `--mesh 1x4` shards parameters over 4
devices, `--mesh 2x2` does both. The batch is always split over all devices. With several
processes (jax.distributed) the mesh spans the devices of all of them.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..errors import ConfigError

DATA_AXIS, FSDP_AXIS = "data", "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)
# Leaves smaller than this many elements are replicated: splitting them saves nothing.
MIN_SHARDED_SIZE = 2**12


def make_mesh(num_devices: int | None = None, fsdp: int = 1, devices: list | None = None) -> Mesh:
    """A [num_devices // fsdp, fsdp] mesh over the first `num_devices` devices (default: all)."""
    devices = list(jax.devices() if devices is None else devices)
    num_devices = len(devices) if num_devices is None else num_devices
    if not 1 <= num_devices <= len(devices):
        raise ConfigError(f"num_devices={num_devices}; expected 1..{len(devices)}, the devices available")
    if fsdp < 1 or num_devices % fsdp:
        raise ConfigError(f"fsdp={fsdp}; expected a positive divisor of num_devices={num_devices}")
    grid = np.array(devices[:num_devices], dtype=object).reshape(num_devices // fsdp, fsdp)
    return Mesh(grid, BATCH_AXES)


def parse_mesh(spec: str) -> tuple[int, int]:
    """"DATAxFSDP" (e.g. "2x2") -> (num_devices, fsdp)."""
    parts = spec.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--mesh {spec!r}; expected DATAxFSDP with positive integers, e.g. 4x1 or 2x2")
    data, fsdp = map(int, parts)
    return data * fsdp, fsdp


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that puts a full copy of an array on every device of `mesh`."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh, leading_dims: int = 0) -> NamedSharding:
    """Rows split over every device; `leading_dims` unsplit axes before the batch axis
    (e.g. the micro-batch axis of gradient accumulation)."""
    return NamedSharding(mesh, PartitionSpec(*([None] * leading_dims), BATCH_AXES))


def leaf_spec(shape: tuple[int, ...], shards: int, min_size: int = MIN_SHARDED_SIZE) -> PartitionSpec:
    """Split the largest dimension divisible by `shards` over the fsdp axis; replicate
    small leaves and leaves with no such dimension."""
    if shards == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return PartitionSpec()
    divisible = [axis for axis, size in enumerate(shape) if size % shards == 0]
    if not divisible:
        return PartitionSpec()
    axis = max(divisible, key=lambda a: (shape[a], a))
    return PartitionSpec(*[FSDP_AXIS if a == axis else None for a in range(len(shape))])


def tree_shardings(tree: Any, mesh: Mesh, min_size: int = MIN_SHARDED_SIZE) -> Any:
    """NamedShardings for a pytree of arrays or ShapeDtypeStructs (params, optimiser state).

    The rule depends only on a leaf's shape, so Adam's moments are split like their param."""
    shards = mesh.shape[FSDP_AXIS]
    return jax.tree.map(lambda leaf: NamedSharding(mesh, leaf_spec(tuple(leaf.shape), shards, min_size)), tree)


def global_batch(arrays: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Host arrays holding the whole global batch -> global jax.Arrays split by `sharding`.

    Every process holds the same global batch (all read the same deterministic stream) and
    hands over only the slices its own devices need, so this works with one or many processes."""
    return {
        name: jax.make_array_from_callback(values.shape, sharding, lambda index, values=values: values[index])
        for name, values in arrays.items()
    }


def to_host(tree: Any) -> Any:
    """A pytree of (possibly sharded, possibly multi-process) arrays as numpy arrays."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))
