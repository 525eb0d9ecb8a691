"""Initial parameter values: distributions that the modules declare, and a fast host draw.

Each module passes its initialisers where it creates its params, e.g.
`nn.Dense(..., kernel_init=normal(config.initializer_range), bias_init=zeros)`. An
initialiser here is a `Distribution`, `shift + scale * standard draw`, written once for jax
(`sample`) and once for numpy (`fill`). Called by Flax, it returns its sample in a
`Declared` box (an `nn.meta.AxisMetadata`, like `nn.Partitioned`) that remembers the
distribution, so that `jax.eval_shape(module.init, ...)` yields every param's shape AND
distribution without drawing anything. Flax strips the box when a module reads its param;
`nn.meta.unbox` strips it from a param tree.

`module.init` draws with jax. `draw_on_host` draws the same distributions from a concrete
key faster: numpy on every core, in fixed chunks each seeded from (key, param path, chunk),
so the numbers depend on neither the number of threads nor the order in which modules
create their params. The two give different numbers from the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct, traverse_util

_STANDARD = ("normal", "uniform", "zero")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """`shift + scale * X`, X standard: "normal" N(0, 1), "uniform" U[0, 1) or "zero" 0.

    `shift` is a number, or a tuple of numbers for the last axis (A_re, A_im). Called as a
    Flax initialiser `(key, shape, dtype) -> Declared`.
    """

    standard: str
    scale: float = 1.0
    shift: float | tuple[float, ...] = 0.0

    def __post_init__(self):
        if self.standard not in _STANDARD:
            raise ValueError(f"standard must be one of {_STANDARD}, got {self.standard!r}")

    def sample(self, key, shape, dtype=jnp.float32) -> jax.Array:
        """A draw of `shape` with jax."""
        if self.standard == "normal":
            standard = jax.random.normal(key, shape, dtype)
        elif self.standard == "uniform":
            standard = jax.random.uniform(key, shape, dtype)
        else:
            standard = jnp.zeros(shape, dtype)
        return jnp.asarray(self.shift, dtype) + jnp.asarray(self.scale, dtype) * standard

    def fill(self, out: np.ndarray, generator: np.random.Generator | None) -> None:
        """Fill float32 `out` in place with a draw from numpy's `generator` (None for "zero")."""
        if self.standard == "normal":
            generator.standard_normal(out=out, dtype=np.float32)
        elif self.standard == "uniform":
            generator.random(out=out, dtype=np.float32)
        else:
            out[...] = 0.0
        out *= np.float32(self.scale)
        out += np.asarray(self.shift, np.float32)

    def __call__(self, key, shape, dtype=jnp.float32) -> Declared:
        return Declared(self.sample(key, shape, dtype), self)


def normal(stddev: float) -> Distribution:
    """N(0, stddev^2)."""
    return Distribution("normal", scale=float(stddev))


def uniform(low: float, high: float) -> Distribution:
    """U[low, high)."""
    return Distribution("uniform", scale=float(high - low), shift=float(low))


def constant(value) -> Distribution:
    """`value`: a number, or a 1-D array for the last axis (kept exactly in float32)."""
    value = np.asarray(value, np.float32)
    return Distribution("zero", scale=0.0, shift=float(value) if value.ndim == 0 else tuple(value.tolist()))


zeros = constant(0.0)
ones = constant(1.0)


class Declared(struct.PyTreeNode, nn.meta.AxisMetadata):
    """A param's value with the distribution it was declared with. Stacking params (nn.scan)
    changes nothing: the distribution is per element."""

    value: Any
    distribution: Distribution = struct.field(pytree_node=False)

    def unbox(self):
        return self.value

    def replace_boxed(self, val):
        return self.replace(value=val)

    def add_axis(self, index, params):
        return self

    def remove_axis(self, index, params):
        return self


def draw_on_host(declared: dict, key, shardings: dict | None = None) -> dict:
    """Fresh params: the tree of `declared` (`jax.eval_shape(module.init, ...)["params"]`,
    Declared leaves) filled on the host from a concrete `key`, as plain arrays owned by jax:
    on the default device, or placed by `shardings` (a tree of jax.sharding.Sharding like
    the params), so that no device ever holds more than its own pieces.

    Raises TypeError naming a param that is not float32 or was created without a
    Distribution of this module."""
    flat = traverse_util.flatten_dict(declared)
    for path, leaf in flat.items():
        if not isinstance(leaf, Declared):
            raise TypeError(f"param {'/'.join(path)} has no declared distribution: create it with an "
                            "initialiser from bigs.initializers")
        if leaf.value.dtype != jnp.float32:
            raise TypeError(f"{'/'.join(path)} is {leaf.value.dtype}; BiGS params are float32")
    layout = tuple((path, tuple(leaf.value.shape), leaf.distribution) for path, leaf in flat.items())
    placements = [None] * len(flat) if shardings is None else list(traverse_util.flatten_dict(shardings).values())
    values = [_owned_by_jax(leaf, placement)                          # each host leaf freed once copied
              for leaf, placement in zip(_host_draw(layout, key), placements)]
    return traverse_util.unflatten_dict(dict(zip(flat, values)))


def _owned_by_jax(leaf: np.ndarray, sharding=None) -> jax.Array:
    """`leaf` on the default device (or split by `sharding`, each process handing over the
    pieces of its own devices), in buffers jax owns. On CPU, device_put of an aligned numpy
    array only wraps its memory, and jit cannot reuse such a buffer when it is donated (the
    usual training step): the first step would then hold the params twice. Waiting for the
    copy lets the caller free the host leaf before the next copy starts, which lowers the
    peak memory."""
    if sharding is None:
        wrapped = jax.device_put(leaf)
    else:
        wrapped = jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])
    return jax.device_put(wrapped, may_alias=False).block_until_ready()


# Host draw: each chunk of a leaf is its own numpy generator, seeded from the key, the
# leaf's path and the chunk's place, so chunks fill in parallel (numpy releases the GIL
# while filling). SFC64 was the fastest of numpy's generators here.
HOST_CHUNK = 1 << 22


def _host_draw(layout: tuple, key, threads: int | None = None) -> Iterator[np.ndarray]:
    """The leaves of `layout` ((path, shape, Distribution) each) in order, as float32 numpy
    arrays drawn from `key` on `threads` threads (None: one per core this process may use).
    Chunk c of the leaf at `path` is seeded from (key, a hash of path, c). Later leaves are
    drawn while the caller handles earlier ones."""
    key = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    entropy = [int(word) for word in np.asarray(key, np.uint32).ravel()]
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def fill(distribution, out, place):
        generator = np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy, spawn_key=place)))
        distribution.fill(out, generator)

    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        pending = deque()
        for path, shape, distribution in layout:
            leaf, chunks = _aligned_empty(shape), []
            if distribution.standard == "zero":
                distribution.fill(leaf, None)
            else:
                flat = leaf.reshape(-1)
                leaf_id = tuple(np.frombuffer(hashlib.sha256("/".join(path).encode()).digest()[:8], np.uint32))
                for start in range(0, flat.size, HOST_CHUNK):
                    chunk = (distribution, flat[start:start + HOST_CHUNK], (*map(int, leaf_id), start // HOST_CHUNK))
                    chunks.append(pool.submit(fill, *chunk) if pool else chunk)
            pending.append((leaf, chunks))
        while pending:
            leaf, chunks = pending.popleft()           # ours no longer: the caller may free it
            for chunk in chunks:
                if pool:
                    chunk.result()
                else:
                    fill(*chunk)
            yield leaf


def _aligned_empty(shape: tuple, alignment: int = 64) -> np.ndarray:
    """An uninitialised float32 array whose data starts on an `alignment`-byte boundary: jax on
    CPU then wraps it without a copy (it copies a 16-byte-aligned one), so that
    `_owned_by_jax` copies it once, not twice."""
    size = int(np.prod(shape))
    raw = np.empty(size + alignment // 4, np.float32)
    start = (-raw.ctypes.data % alignment) // 4
    return raw[start:start + size].reshape(shape)
