"""Checkpoint I/O in the Hugging Face Flax layout: hub or local folder, msgpack and
safetensors, the per-layer <-> stacked layer layout, and the load report.

A checkpoint folder holds `config.json` and `flax_model.msgpack` (what the original writes),
optionally `model.safetensors` (same tree, keys joined with "/"), and the tokenizer files.
On disk the layers are always per-layer (`encoder/layer/0/...`), as the original writes them;
in memory they are stacked along a leading axis when `config.scan_layers` is set.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from .errors import CheckpointError
from .files import write_bytes

logger = logging.getLogger("bigs")

FLAX_WEIGHTS_NAME = "flax_model.msgpack"
SAFE_WEIGHTS_NAME = "model.safetensors"
BACKBONE = "s4_bert"
BACKBONE_KEYS = ("embeddings", "encoder", "pooler")

Params = dict[str, Any]


# ------------------------------------------------------------------ locating files
def resolve_file(path_or_id: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | None = None, token: str | bool | None = None,
                 local_files_only: bool = False, required: bool = True) -> str | None:
    """Path of `filename` in a local folder, or downloaded from a Hugging Face hub repo.

    Returns None if the file does not exist and `required` is False. Raises CheckpointError
    naming the folder or hub id otherwise.
    """
    path = os.fspath(path_or_id)
    if os.path.isdir(path):
        candidate = os.path.join(path, filename)
        if os.path.isfile(candidate):
            return candidate
        if required:
            raise CheckpointError(f"{path} has no {filename}")
        return None
    if os.path.exists(path) or path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise CheckpointError(f"{path!r} is not a checkpoint folder (expected a folder or a hub id like 'JunxiongWang/BiGS_512')")

    import huggingface_hub
    from huggingface_hub import errors as hub_errors

    download = huggingface_hub.hf_hub_download  # resolve the lazy import first: it resets the hub's log level
    try:
        with _quiet_hub_logs():
            return download(path, filename, revision=revision, cache_dir=cache_dir, token=token,
                            local_files_only=local_files_only)
    except hub_errors.LocalEntryNotFoundError:  # offline (a subclass of EntryNotFoundError)
        if not required and _cached_repo(path, cache_dir):
            return None
        raise CheckpointError(
            f"could not reach the Hugging Face hub for {path!r} and it is not in the local cache. "
            "Offline, pass the path of a local checkpoint folder instead."
        ) from None
    except hub_errors.EntryNotFoundError:
        if required:
            raise CheckpointError(f"hub repo {path!r} has no file {filename}") from None
        return None
    except hub_errors.RepositoryNotFoundError:
        raise CheckpointError(f"hub repo {path!r} does not exist (or is private: pass token=...)") from None
    except hub_errors.RevisionNotFoundError:
        raise CheckpointError(f"hub repo {path!r} has no revision {revision!r}") from None
    except OSError as err:  # connection errors
        raise CheckpointError(
            f"could not reach the Hugging Face hub for {path!r} and it is not in the local cache "
            f"({type(err).__name__}). Offline, pass the path of a local checkpoint folder instead."
        ) from None


@contextlib.contextmanager
def _quiet_hub_logs():
    """Offline, huggingface_hub logs a warning per connection retry; we raise one clear error instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def _cached_repo(repo_id: str, cache_dir: str | None) -> bool:
    """True when some file of repo_id is in the hub cache (so a missing optional file is absent, not unreachable)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir)
    return isinstance(found, str)


# ----------------------------------------------------------------- reading/writing
def read_params(folder_or_id: str | os.PathLike, **hub_kwargs) -> Params:
    """The nested param tree (numpy float arrays) of a checkpoint, in per-layer layout."""
    for name, read in ((FLAX_WEIGHTS_NAME, read_msgpack), (SAFE_WEIGHTS_NAME, read_safetensors)):
        path = resolve_file(folder_or_id, name, required=False, **hub_kwargs)
        if path is not None:
            tree = read(path)
            _check_leaves(tree, path)  # one check for both formats: float arrays, no NaN or inf
            return tree
    raise CheckpointError(f"{os.fspath(folder_or_id)} has neither {FLAX_WEIGHTS_NAME} nor {SAFE_WEIGHTS_NAME}")


def read_msgpack(path: str) -> Params:
    with open(path, "rb") as f:
        data = f.read()
    try:
        tree = serialization.msgpack_restore(data)
    except Exception as err:  # msgpack raises several unrelated types on corrupt input
        raise CheckpointError(
            f"{path} is truncated or corrupt ({len(data)} bytes; msgpack: {type(err).__name__}: {err})"
        ) from None
    if not isinstance(tree, dict) or not tree:
        raise CheckpointError(f"{path} does not hold a parameter tree (got {type(tree).__name__})")
    return tree


def read_safetensors(path: str) -> Params:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        flat = load_file(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({err})") from None
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})


def _check_leaves(tree: Params, path: str) -> None:
    for key, leaf in traverse_util.flatten_dict(tree).items():
        if not isinstance(leaf, (np.ndarray, jax.Array)) or not np.issubdtype(leaf.dtype, np.floating):
            raise CheckpointError(f"{path}: parameter {'/'.join(key)} is not a float array ({type(leaf).__name__})")
        if not np.all(np.isfinite(leaf)):
            raise CheckpointError(f"{path}: parameter {'/'.join(key)} holds NaN or inf")


def write_params(folder: str | os.PathLike, params: Params, safetensors: bool = True) -> list[str]:
    """Write params (per-layer layout) as flax_model.msgpack (+ model.safetensors), atomically."""
    os.makedirs(folder, exist_ok=True)
    params = jax.tree.map(lambda x: np.asarray(jax.device_get(x), np.float32), params)
    written = [os.path.join(folder, FLAX_WEIGHTS_NAME)]
    write_bytes(written[0], serialization.msgpack_serialize(params))
    if safetensors:
        from safetensors.numpy import save

        flat = {"/".join(k): np.ascontiguousarray(v) for k, v in traverse_util.flatten_dict(params).items()}
        written.append(os.path.join(folder, SAFE_WEIGHTS_NAME))
        write_bytes(written[1], save(flat, metadata={"format": "flax"}))
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


# -------------------------------------------------------------------- load report
@dataclass
class LoadReport:
    """What happened to each parameter when a checkpoint was loaded into a model."""

    missing_keys: list[str] = field(default_factory=list)        # in the model, not the checkpoint: random init
    unexpected_keys: list[str] = field(default_factory=list)     # in the checkpoint, not the model: dropped
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # head shape differs: random init
    prefix_change: str | None = None                             # base <-> head re-rooting, if any

    @property
    def needs_init(self) -> bool:
        return bool(self.missing_keys or self.mismatched_keys)

    def messages(self, model_name: str, source: str) -> list[str]:
        out = []
        if self.prefix_change:
            out.append(f"{model_name}: {self.prefix_change}")
        if self.mismatched_keys:
            shapes = ", ".join(f"{k} {tuple(c)} -> {tuple(m)}" for k, c, m in self.mismatched_keys)
            out.append(f"{model_name}: re-initialised {len(self.mismatched_keys)} head parameters whose shapes "
                       f"differ from {source} ({shapes}); train them before use")
        if self.missing_keys:
            out.append(f"{model_name}: {len(self.missing_keys)} parameters not in {source} were newly "
                       f"initialised: {', '.join(self.missing_keys)}")
        if self.unexpected_keys:
            out.append(f"{model_name}: {len(self.unexpected_keys)} parameters of {source} are not used by "
                       f"this model: {', '.join(self.unexpected_keys)}")
        return out


def _join(key: tuple) -> str:
    return "/".join(key)


def _is_backbone(key: tuple, model_has_prefix: bool) -> bool:
    return key[0] == BACKBONE if model_has_prefix else key[0] in BACKBONE_KEYS


def fit_params(loaded: Params, init: Params, source: str) -> tuple[Params, LoadReport]:
    """Fit a checkpoint's tree (per-layer layout) to a model's param tree (per-layer layout;
    arrays or jax.ShapeDtypeStruct): re-root base <-> head, keep what matches. Leaves that
    must be initialised afresh come back as None (see LoadReport.needs_init).

    A backbone parameter whose shape differs means the config does not describe this
    checkpoint: CheckpointError naming the first one. A head parameter whose shape differs
    (e.g. a 3-label classifier loaded for 2 labels) is re-initialised and reported.
    """
    report = LoadReport()
    model_has_prefix = BACKBONE in init
    if model_has_prefix and BACKBONE not in loaded and "encoder" in loaded:
        loaded = {BACKBONE: {k: v for k, v in loaded.items() if k in BACKBONE_KEYS},
                  **{k: v for k, v in loaded.items() if k not in BACKBONE_KEYS}}
        report.prefix_change = f"loaded the base-model checkpoint {source} as its `{BACKBONE}` backbone"
    elif not model_has_prefix and BACKBONE in loaded:
        dropped = {k: v for k, v in loaded.items() if k != BACKBONE}
        loaded = dict(loaded[BACKBONE])
        loaded.update({f"<head>{k}": v for k, v in dropped.items()})
        report.prefix_change = f"took the `{BACKBONE}` backbone of the head-model checkpoint {source}"

    flat_loaded = traverse_util.flatten_dict(loaded)
    flat_init = traverse_util.flatten_dict(init)
    result = {}
    for key, init_value in flat_init.items():
        if key not in flat_loaded:
            report.missing_keys.append(_join(key))
            result[key] = None
            continue
        value = flat_loaded[key]
        if tuple(value.shape) != tuple(init_value.shape):
            if _is_backbone(key, model_has_prefix):
                raise CheckpointError(
                    f"{source}: parameter {_join(key)} has shape {tuple(value.shape)} but the config gives "
                    f"{tuple(init_value.shape)}: the config does not match this checkpoint"
                )
            report.mismatched_keys.append((_join(key), tuple(value.shape), tuple(init_value.shape)))
            result[key] = None
            continue
        result[key] = np.asarray(value, np.float32)
    report.unexpected_keys = sorted(_join(k).replace("<head>", "") for k in flat_loaded if k not in flat_init)
    missing_backbone = [k for k in report.missing_keys if _is_backbone(tuple(k.split("/")), model_has_prefix)]
    if missing_backbone and len(missing_backbone) == sum(_is_backbone(k, model_has_prefix) for k in flat_init):
        raise CheckpointError(f"{source} holds no parameter of this model's backbone "
                              f"(first expected: {missing_backbone[0]}); is it a BiGS checkpoint?")
    return traverse_util.unflatten_dict(result), report


def fill_missing(fitted: Params, init: Params) -> Params:
    """Replace the None leaves of `fitted` with the values of `init` (same layout)."""
    flat_init = traverse_util.flatten_dict(init)
    flat = traverse_util.flatten_dict(fitted, keep_empty_nodes=True)
    return traverse_util.unflatten_dict({k: flat_init[k] if v is None else v for k, v in flat.items()})
