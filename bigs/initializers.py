"""Initial parameter values, decided by each parameter's name.

Every BiGS parameter's initial distribution follows from the last element of its path:

    kernel, embedding   N(0, initializer_range^2)       (the original's Dense and Embed init)
    C                   N(0, 1/2) per real and imaginary part: a unit-variance complex normal
    log_step            uniform on [log 0.01, 0]         (dt log-uniform on [0.01, 1])
    A_re, A_im          ssm.init_A(config.scaling)       (deterministic)
    bias                0
    scale, D            1

The Flax modules take their initializers from `flax_initializer`, so `module.init` draws
from this table. `init_params` draws the same distributions faster, with the shapes from
tracing `module.init` (no computation). `module.init` compiles a key split and a draw per
parameter, which took 1.5 s to compile at base size, more than the draw itself. Two ways:

- with a concrete key (building a model): on the host, by numpy on every core, in fixed
  chunks each seeded from (key, leaf, chunk), so the numbers do not depend on the number of
  threads. Nothing is compiled; each leaf is then copied once into memory jax owns.
- under a trace (the sharded train state in `bigs.train.pretrain`): one compiled program in
  which each large leaf is one threefry draw and the small leaves are cut from one pool.

The two give different numbers from the same key, with the same distributions (tested).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from . import ssm
from .runtime import small_pages

# (kind, *arguments) per parameter name; "initializer_range" is read from the config.
_LOG_STEP_RANGE = (float(np.log(0.01)), 0.0)
_TABLE = {
    "kernel": ("normal", "initializer_range"),
    "embedding": ("normal", "initializer_range"),
    "C": ("normal", 0.5 ** 0.5),
    "log_step": ("uniform", *_LOG_STEP_RANGE),
    "A_re": ("A", 0),
    "A_im": ("A", 1),
    "bias": ("constant", 0.0),
    "scale": ("constant", 1.0),
    "D": ("constant", 1.0),
}


def spec(name: str, config) -> tuple:
    """The initial distribution of a parameter called `name`, with the config's values filled in."""
    if name not in _TABLE:
        raise KeyError(f"no initializer for a parameter named {name!r}; add it to bigs.initializers._TABLE")
    kind, *args = _TABLE[name]
    if kind == "normal" and args[0] == "initializer_range":
        args = [float(config.initializer_range)]
    if kind == "A":
        args = [config.scaling, config.num_ssm, args[0]]
    return (kind, *args)


def _value(spec_: tuple, key, shape, dtype=jnp.float32):
    kind, *args = spec_
    if kind == "normal":
        return jax.random.normal(key, shape, dtype) * jnp.asarray(args[0], dtype)
    if kind == "uniform":
        return jax.random.uniform(key, shape, dtype, minval=args[0], maxval=args[1])
    if kind == "constant":
        return jnp.full(shape, args[0], dtype)
    scaling, num_ssm, part = args
    return jnp.broadcast_to(jnp.asarray(ssm.init_A(scaling, num_ssm)[part], dtype), shape)


def flax_initializer(name: str, config):
    """An init function `(key, shape, dtype) -> array` for `nn.Module.param` or nn.Dense/Embed."""
    return partial(_value, spec(name, config))


def init_params(module, shapes: dict, key) -> dict:
    """Fresh params for `module` with the tree and shapes of `shapes` (jax.ShapeDtypeStruct
    leaves, e.g. from `jax.eval_shape(module.init, ...)`), drawn on the host when `key` is
    concrete and by a compiled draw when it is traced."""
    flat = traverse_util.flatten_dict(shapes)
    for path, leaf in flat.items():
        if leaf.dtype != jnp.float32:
            raise TypeError(f"{'/'.join(path)} is {leaf.dtype}; BiGS params are float32")
    layout = tuple((path, tuple(leaf.shape), spec(path[-1], module.config)) for path, leaf in flat.items())
    if isinstance(key, jax.core.Tracer):
        with jax.threefry_partitionable(False):  # the faster threefry on CPU (0.8 s vs 1.3 s for 110M numbers)
            values = _draw(layout, OWN_DRAW_MIN_SIZE, key)
    else:
        with small_pages():
            values = [_owned_by_jax(leaf) for leaf in _host_draw(layout, key)]   # each host leaf freed once copied
    return traverse_util.unflatten_dict(dict(zip(flat, values)))


def _owned_by_jax(leaf: np.ndarray) -> jax.Array:
    """`leaf` on the default device, in a buffer jax owns. On CPU, device_put of an aligned
    numpy array only wraps its memory, and jit cannot reuse such a buffer when it is donated
    (the usual training step): the first step would then hold the params twice. The copy
    costs about 0.17 s for 110M numbers on this CPU. Waiting for it lets the caller free the
    host leaf before the next copy starts: 0.88 GB peak RSS at base size instead of 1.31."""
    return jax.device_put(jax.device_put(leaf), may_alias=False).block_until_ready()


# Host draw: each chunk of a leaf is its own numpy generator, seeded from the key and the
# chunk's place, so chunks fill in parallel (numpy releases the GIL while filling) and the
# result is the same on any number of threads. SFC64 was the fastest of numpy's generators
# here: 110M float32 normals in 0.42 s on 2 threads (PCG64 0.51 s, Philox 0.58 s).
HOST_CHUNK = 1 << 22


def _host_draw(layout: tuple, key, threads: int | None = None) -> Iterator[np.ndarray]:
    """The leaves of `layout` in order, as float32 numpy arrays, random ones drawn from `key`
    on `threads` threads (None: one per core this process may use). Later leaves are drawn
    while the caller handles earlier ones."""
    key = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    entropy = [int(word) for word in np.asarray(key, np.uint32).ravel()]
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def fill(spec_, out, place):
        kind, *args = spec_
        generator = np.random.Generator(np.random.SFC64(np.random.SeedSequence(entropy, spawn_key=place)))
        if kind == "normal":
            generator.standard_normal(out=out, dtype=np.float32)
            out *= np.float32(args[0])
        else:
            generator.random(out=out, dtype=np.float32)
            out *= np.float32(args[1] - args[0])
            out += np.float32(args[0])

    with ThreadPoolExecutor(threads) if threads > 1 else nullcontext() as pool:
        pending = deque()
        for index, (_, shape, spec_) in enumerate(layout):
            leaf, chunks = _aligned_empty(shape), []
            kind, *args = spec_
            if kind == "constant":
                leaf[...] = args[0]
            elif kind == "A":
                scaling, num_ssm, part = args
                leaf[...] = ssm.init_A(scaling, num_ssm)[part]
            else:
                flat = leaf.reshape(-1)
                for start in range(0, flat.size, HOST_CHUNK):
                    chunk = (spec_, flat[start:start + HOST_CHUNK], (index, start // HOST_CHUNK))
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


# Leaves at least this big get their own draw; the smaller ones share one pool. A pool costs
# a copy and holds its numbers twice at the peak; a draw of its own costs about 70 ms of
# compilation. At base size this draws the word embeddings and the stacked dv, dol and do
# kernels alone and pools the rest (~30M numbers): 0.15-0.3 s faster than drawing every
# leaf over 1M alone, for 0.01 GB more peak RSS; pooling everything was 2.44 GB, not 1.29.
OWN_DRAW_MIN_SIZE = 1 << 23


@partial(jax.jit, static_argnums=(0, 1))
def _draw(layout: tuple, own_draw_min_size: int, key) -> list:
    """The leaves of `layout`: large random leaves drawn directly, the small ones cut from
    one normal and one uniform pool."""
    random = [i for i, (_, shape, (kind, *_)) in enumerate(layout) if kind in ("normal", "uniform")]
    own = [i for i in random if int(np.prod(layout[i][1])) >= own_draw_min_size]
    pooled = [i for i in random if i not in own]
    keys = jax.random.split(key, len(own) + 2)
    values = {i: _value(layout[i][2], leaf_key, layout[i][1]) for i, leaf_key in zip(own, keys)}
    sizes = {kind: sum(int(np.prod(layout[i][1])) for i in pooled if layout[i][2][0] == kind)
             for kind in ("normal", "uniform")}
    # The barrier keeps XLA from fusing the generator into every slice (a compiled threefry
    # per parameter again).
    pools = jax.lax.optimization_barrier({
        "normal": jax.random.normal(keys[-2], (sizes["normal"],), jnp.float32),
        "uniform": jax.random.uniform(keys[-1], (sizes["uniform"],), jnp.float32)})
    offsets = {"normal": 0, "uniform": 0}
    for i in pooled:
        _, shape, (kind, *args) = layout[i]
        size = int(np.prod(shape))
        draw = pools[kind][offsets[kind]:offsets[kind] + size].reshape(shape)
        offsets[kind] += size
        values[i] = draw * args[0] if kind == "normal" else args[0] + draw * (args[1] - args[0])
    return [values[i] if i in values else _value(spec_, None, shape) for i, (_, shape, spec_) in enumerate(layout)]
