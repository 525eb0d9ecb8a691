"""Initial parameter values, decided by each parameter's name.

Every BiGS parameter's initial distribution follows from the last element of its path:

    kernel, embedding   N(0, initializer_range^2)       (the original's Dense and Embed init)
    C                   N(0, 1/2) per real and imaginary part: a unit-variance complex normal
    log_step            uniform on [log 0.01, 0]         (dt log-uniform on [0.01, 1])
    A_re, A_im          ssm.init_A(config.scaling)       (deterministic)
    bias                0
    scale, D            1

The Flax modules take their initializers from `flax_initializer`, so `module.init` draws
from this table. `init_params` draws the same distributions faster: the shapes come from
tracing `module.init` (no computation), each large leaf is one threefry draw, and the many
small leaves are cut from one shared draw. `module.init` instead compiles a key split and a
draw per parameter, which took 1.5 s to compile at base size, more than the draw itself.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from . import ssm

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
    leaves, e.g. from `jax.eval_shape(module.init, ...)`)."""
    flat = traverse_util.flatten_dict(shapes)
    layout = tuple((path, tuple(leaf.shape), spec(path[-1], module.config)) for path, leaf in flat.items())
    with jax.threefry_partitionable(False):  # the faster threefry on CPU (0.8 s vs 1.3 s for 110M numbers)
        values = _draw(layout, OWN_DRAW_MIN_SIZE, key)
    return traverse_util.unflatten_dict(dict(zip(flat, values)))


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
