"""Checkpoint I/O for the Flax model: writing, and the per-layer <-> stacked layer layout.

Reading, the hub, the two layouts on disk and the load report are framework-neutral and live
in bigs/weights.py (re-exported here). A checkpoint folder holds `config.json`,
`flax_model.msgpack` (what the original writes: Flax layout), `model.safetensors` (the
PyTorch layout) and the tokenizer files. On disk the layers are always per-layer
(`encoder/layer/0/...`), as the original writes them; in memory they are stacked along a
leading axis when `config.scan_layers` is set.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from .files import write_bytes
from .weights import (
    BACKBONE,
    BACKBONE_KEYS,
    FLAX_WEIGHTS_NAME,
    SAFE_WEIGHTS_NAME,
    LoadReport,
    fit_params,
    logger,
    msgpack_bytes,
    read_msgpack,
    read_params,
    read_safetensors,
    resolve_file,
    safetensors_bytes,
)

__all__ = [
    "BACKBONE", "BACKBONE_KEYS", "FLAX_WEIGHTS_NAME", "SAFE_WEIGHTS_NAME", "LoadReport", "fit_params", "logger",
    "read_msgpack", "read_params", "read_safetensors", "resolve_file", "write_params", "stack_layers",
    "unstack_layers", "fill_missing",
]

Params = dict[str, Any]


def write_params(folder: str | os.PathLike, params: Params, safetensors: bool = True) -> list[str]:
    """Write params (per-layer layout) as flax_model.msgpack (Flax layout) and, with
    `safetensors`, model.safetensors (PyTorch layout), each atomically. Returns the paths."""
    os.makedirs(folder, exist_ok=True)
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
    written = [os.path.join(folder, FLAX_WEIGHTS_NAME)]
    write_bytes(written[0], msgpack_bytes(params))
    if safetensors:
        written.append(os.path.join(folder, SAFE_WEIGHTS_NAME))
        write_bytes(written[1], safetensors_bytes(params))
    return written


# ------------------------------------------------------------------- layer layout
def _map_encoders(params: Params, fn) -> Params:
    """Apply fn to every `encoder/layer` subtree (at the root or under s4_bert)."""
    out = dict(params)
    for holder in (out, out.get(BACKBONE)):
        if isinstance(holder, dict) and isinstance(holder.get("encoder"), dict) and "layer" in holder["encoder"]:
            if holder is not out:
                holder = out[BACKBONE] = dict(holder)
            holder["encoder"] = dict(holder["encoder"], layer=fn(holder["encoder"]["layer"]))
    return out


def is_stacked(layers: Params) -> bool:
    """Whether a `layers` subtree is stacked (scan_layers: one tree with a leading layer
    axis) rather than per-layer ({"0": ..., "1": ...})."""
    return not all(k.isdigit() for k in layers)


def stack_layers(params: Params) -> Params:
    """Per-layer `layer/<i>/...` -> stacked `layer/...` with a leading layer axis."""
    def stack(layers):
        if is_stacked(layers):
            return layers
        ordered = [layers[str(i)] for i in range(len(layers))]
        return jax.tree.map(lambda *xs: jnp.stack(xs), *ordered)
    return _map_encoders(params, stack)


def unstack_layers(params: Params) -> Params:
    """Stacked `layer/...` -> per-layer `layer/<i>/...` (the checkpoint layout)."""
    def unstack(layers):
        if not is_stacked(layers):
            return layers
        n = jax.tree.leaves(layers)[0].shape[0]
        return {str(i): jax.tree.map(lambda x, i=i: _layer(x, i), layers) for i in range(n)}
    return _map_encoders(params, unstack)


def _layer(x, i):
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct(x.shape[1:], x.dtype)
    return x[i]


def fill_missing(fitted: Params, init: Params) -> Params:
    """Replace the None leaves of `fitted` with the values of `init` (same layout)."""
    flat_init = traverse_util.flatten_dict(init)
    flat = traverse_util.flatten_dict(fitted, keep_empty_nodes=True)
    return traverse_util.unflatten_dict({k: flat_init[k] if v is None else v for k, v in flat.items()})
