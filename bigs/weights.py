"""Checkpoint files for both frameworks, with numpy only (no jax, no torch).

What the Flax model (bigs/modeling.py) and the PyTorch model (bigs/torch/modeling.py) share
about weights on disk, written once:

- where a file is: a local folder or a Hugging Face hub repo (`resolve_file`);
- the two files: `flax_model.msgpack` (the original's format: flax's msgpack, the Flax
  layout) and `model.safetensors` (the PyTorch layout every Hugging Face tool expects; its
  metadata says `{"format": "pt"}`). bigs releases before 0.2 wrote the Flax layout into
  model.safetensors with `{"format": "flax"}`: it still loads, told apart by that metadata;
- the two layouts of one set of parameters (`to_torch_layout`, `from_torch_layout`);
- fitting a checkpoint's parameters to a model's (`fit_params`) and the report of what
  was missing, unexpected or re-initialised (`LoadReport`).

Parameters travel as a nested dict in the Flax layout, the layout of the original
checkpoints: `{"s4_bert": {"encoder": {"layer": {"0": {"fs4": {"C": array}}}}}}`, dense
kernels [in, out], per-layer. The PyTorch layout is a flat dict of "."-joined names with
dense weights [out, in]:

    Flax (path, shape)                                   PyTorch (name, shape)
    s4_bert/encoder/layer/0/dv/kernel       [H, I]       s4_bert.encoder.layer.0.dv.weight       [I, H]
    s4_bert/encoder/layer/0/LayerNorm/scale [H]          s4_bert.encoder.layer.0.LayerNorm.weight [H]
    s4_bert/embeddings/word_embeddings/embedding [V, H]  s4_bert.embeddings.word_embeddings.weight [V, H]
    s4_bert/encoder/layer/0/fs4/C           [N, 2]       s4_bert.encoder.layer.0.fs4.C           [N, 2]
    .../bias, A_re, A_im, D, log_step                    the same name, the same array
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from .errors import CheckpointError

logger = logging.getLogger("bigs")

FLAX_WEIGHTS_NAME = "flax_model.msgpack"
SAFE_WEIGHTS_NAME = "model.safetensors"
BACKBONE = "s4_bert"                       # the head models' backbone prefix (both frameworks)
BACKBONE_KEYS = ("embeddings", "encoder", "pooler")

# safetensors metadata "format" of each layout ("pt" is what transformers writes and expects).
TORCH_FORMAT = "pt"
FLAX_FORMAT = "flax"

# PyTorch names that alias another parameter (tied, as in transformers' BERT): never stored.
TIED_WEIGHTS = {
    "cls.predictions.decoder.weight": f"{BACKBONE}.embeddings.word_embeddings.weight",
    "cls.predictions.decoder.bias": "cls.predictions.bias",
}

Params = dict[str, Any]


# ------------------------------------------------------------------ locating files
def resolve_file(path_or_id: str | os.PathLike, filename: str, *, revision: str | None = None,
                 cache_dir: str | None = None, token: str | bool | None = None,
                 local_files_only: bool = False, required: bool = True) -> str | None:
    """Path of `filename` in a local folder, or downloaded from a Hugging Face hub repo.

    Returns None if the file does not exist and `required` is False. Raises CheckpointError
    naming the folder or hub id otherwise, and when the hub cannot be reached.
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
    local_files_only = local_files_only or not hub_reachable()
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


def hub_reachable() -> bool:
    """False when HF_HUB_OFFLINE is set or the hub's host cannot be reached (one TCP connect,
    at most 3 s, once per process): the hub's own retries take 25-40 s to fail."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    return _connects(url.hostname, url.port or (443 if url.scheme == "https" else 80))


@functools.lru_cache(maxsize=None)
def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


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


# -------------------------------------------------------------------------- trees
def flatten(tree: Mapping) -> dict[tuple[str, ...], Any]:
    """{("a", "b"): leaf} for the nested dict {"a": {"b": leaf}}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update({(key,) + sub: leaf for sub, leaf in flatten(value).items()})
        else:
            flat[(key,)] = value
    return flat


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> Params:
    """The inverse of `flatten`."""
    tree: Params = {}
    for key, value in flat.items():
        node = tree
        for part in key[:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = value
    return tree


# ----------------------------------------------------------------------- layouts
def torch_name(path: tuple[str, ...]) -> tuple[str, bool]:
    """(PyTorch name, whether the array is transposed) of the Flax param at `path`."""
    *parents, leaf = path
    transpose = leaf == "kernel"
    if leaf in ("kernel", "scale", "embedding"):
        leaf = "weight"
    return ".".join((*parents, leaf)), transpose


def flax_path(name: str, ndim: int) -> tuple[tuple[str, ...], bool]:
    """(Flax path, whether the array is transposed) of the PyTorch param `name` of `ndim`
    dimensions. Raises CheckpointError for a "weight" that is none of the three kinds."""
    *parents, leaf = name.split(".")
    if leaf != "weight":
        return (*parents, leaf), False
    owner = parents[-1] if parents else ""
    if owner == "LayerNorm":
        return (*parents, "scale"), False
    if owner.endswith("_embeddings"):
        return (*parents, "embedding"), False
    if ndim == 2:
        return (*parents, "kernel"), True
    raise CheckpointError(f"parameter {name} has {ndim} dimensions; a dense weight has 2")


def to_torch_layout(tree: Params) -> dict[str, np.ndarray]:
    """Flax-layout tree -> PyTorch state dict (numpy arrays, dense weights [out, in])."""
    out = {}
    for path, value in flatten(tree).items():
        name, transpose = torch_name(path)
        out[name] = np.ascontiguousarray(np.asarray(value).T) if transpose else np.asarray(value)
    return out


def from_torch_layout(state: Mapping[str, Any]) -> Params:
    """PyTorch state dict (numpy arrays) -> Flax-layout tree. Tied aliases are skipped."""
    flat = {}
    for name, value in state.items():
        if name in TIED_WEIGHTS:
            continue
        value = np.asarray(value)
        path, transpose = flax_path(name, value.ndim)
        flat[path] = np.ascontiguousarray(value.T) if transpose else value
    return unflatten(flat)


# ------------------------------------------------------------------ msgpack (flax)
# flax.serialization's format: a msgpack map; each array is ExtType 1 holding
# msgpack((shape, dtype name, C-order bytes)); arrays over 2**30 bytes are split into
# {"__msgpack_chunked_array__": True, "shape": {"0": ...}, "chunks": {"0": array, ...}}.
_EXT_NDARRAY, _EXT_COMPLEX, _EXT_SCALAR = 1, 2, 3
_MAX_CHUNK_BYTES = 2 ** 30
_CHUNKED = "__msgpack_chunked_array__"


def _array_from_ext(code: int, data: bytes):
    if code in (_EXT_NDARRAY, _EXT_SCALAR):
        shape, dtype, buffer = msgpack.unpackb(data)
        array = np.frombuffer(buffer, dtype=_numpy_dtype(dtype)).reshape(shape)
        return array[()] if code == _EXT_SCALAR else array
    if code == _EXT_COMPLEX:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    raise ValueError(f"unknown msgpack extension type {code}")


def _numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes   # installed with jax; only bfloat16 checkpoints need it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _unchunk(node):
    if not isinstance(node, dict):
        return node
    if node.get(_CHUNKED):
        shape = tuple(node["shape"][str(i)] for i in range(len(node["shape"])))
        chunks = [node["chunks"][str(i)] for i in range(len(node["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {key: _unchunk(value) for key, value in node.items()}


def read_msgpack(path: str) -> Params:
    """The parameter tree of a flax_model.msgpack, numpy arrays (read-only views of the file's
    bytes). Raises CheckpointError when it is truncated, corrupt or not a tree."""
    with open(path, "rb") as f:
        return read_msgpack_bytes(f.read(), path)


def read_msgpack_bytes(data: bytes, path: str = "msgpack data") -> Params:
    """`read_msgpack` of bytes already read; `path` names them in errors."""
    try:
        tree = msgpack.unpackb(data, ext_hook=_array_from_ext, raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types on corrupt input
        raise CheckpointError(
            f"{path} is truncated or corrupt ({len(data)} bytes; msgpack: {type(err).__name__}: {err})"
        ) from None
    if not isinstance(tree, dict) or not tree:
        raise CheckpointError(f"{path} does not hold a parameter tree (got {type(tree).__name__})")
    return _unchunk(tree)


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
    array = np.asarray(array)
    return msgpack.ExtType(_EXT_NDARRAY, msgpack.packb((array.shape, array.dtype.name, array.tobytes("C")),
                                                        use_bin_type=True))


def msgpack_bytes(tree: Params) -> bytes:
    """A tree of numpy arrays in flax's msgpack format, keys sorted at every level as
    flax.serialization.msgpack_serialize writes them: the same bytes."""
    def canonical(node):
        if isinstance(node, Mapping):
            return {str(key): canonical(node[key]) for key in sorted(node, key=str)}
        array = np.asarray(node)
        if array.nbytes <= _MAX_CHUNK_BYTES:
            return array
        step = max(1, _MAX_CHUNK_BYTES // array.dtype.itemsize)
        flat = array.reshape(-1)
        return {_CHUNKED: True, "shape": {str(i): n for i, n in enumerate(array.shape)},
                "chunks": {str(i): flat[start:start + step] for i, start in enumerate(range(0, flat.size, step))}}

    return msgpack.packb(canonical(tree), default=_pack_array, strict_types=True)


# --------------------------------------------------------------- safetensors (both)
def read_safetensors(path: str) -> Params:
    """The parameter tree (Flax layout) of a model.safetensors in either layout, told apart
    by the file's metadata "format": "pt" (PyTorch layout) or "flax". A file without that
    metadata is read by its key separator ("." or "/"), which the two layouts never share."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            layout = (f.metadata() or {}).get("format")
            flat = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path} is truncated or corrupt ({err})") from None
    if layout is None:
        layout = FLAX_FORMAT if any("/" in key for key in flat) else TORCH_FORMAT
    if layout == FLAX_FORMAT:
        return unflatten({tuple(key.split("/")): value for key, value in flat.items()})
    if layout != TORCH_FORMAT:
        raise CheckpointError(f"{path}: safetensors metadata format {layout!r} is neither 'pt' nor 'flax'")
    return from_torch_layout(flat)


def safetensors_bytes(tree: Params) -> bytes:
    """A Flax-layout tree as model.safetensors in the PyTorch layout ({"format": "pt"})."""
    from safetensors.numpy import save

    return save(to_torch_layout(tree), metadata={"format": TORCH_FORMAT})


def read_params(folder_or_id: str | os.PathLike, *, prefer_safetensors: bool = False, **hub_kwargs) -> Params:
    """The parameter tree (Flax layout, numpy float arrays, per-layer) of a checkpoint:
    flax_model.msgpack if there is one, else model.safetensors (the other way round with
    prefer_safetensors). `hub_kwargs`: revision, cache_dir, token, local_files_only. Raises
    CheckpointError when neither file exists, one is corrupt, or a parameter is not a
    finite float array."""
    files = ((FLAX_WEIGHTS_NAME, read_msgpack), (SAFE_WEIGHTS_NAME, read_safetensors))
    for name, read in (files[::-1] if prefer_safetensors else files):
        path = resolve_file(folder_or_id, name, required=False, **hub_kwargs)
        if path is not None:
            tree = read(path)
            check_leaves(tree, path)
            return tree
    raise CheckpointError(f"{os.fspath(folder_or_id)} has neither {FLAX_WEIGHTS_NAME} nor {SAFE_WEIGHTS_NAME}")


def check_leaves(tree: Params, path: str) -> None:
    """CheckpointError naming the first parameter that is not a float array, or holds NaN or inf."""
    for key, leaf in flatten(tree).items():
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not (np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"):
            raise CheckpointError(f"{path}: parameter {'/'.join(key)} is not a float array ({type(leaf).__name__})")
        if not np.all(np.isfinite(np.asarray(leaf, np.float32))):
            raise CheckpointError(f"{path}: parameter {'/'.join(key)} holds NaN or inf")


def check_fits_config(tree: Params, config, source: str) -> None:
    """CheckpointError unless the parameter tree (Flax layout) has the sizes `config` (a
    bigs.config.BiGSConfig) gives: embedding tables, layer count, layer widths, SSM size.
    For tools that move weights without building a model (bigs convert)."""
    backbone = tree.get(BACKBONE, tree)
    H, I = config.hidden_size, config.intermediate_size
    expected = {
        ("embeddings", "word_embeddings", "embedding"): (config.vocab_size, H),
        ("embeddings", "position_embeddings", "embedding"): (config.max_position_embeddings, H),
        ("embeddings", "token_type_embeddings", "embedding"): (config.type_vocab_size, H),
    }
    layers = backbone.get("encoder", {}).get("layer", {}) if isinstance(backbone, dict) else {}
    if len(layers) != config.num_hidden_layers:
        raise CheckpointError(f"{source} has {len(layers)} layers but its config.json gives "
                              f"num_hidden_layers={config.num_hidden_layers}")
    for index in layers:
        expected[("encoder", "layer", index, "dv", "kernel")] = (H, I)
        expected[("encoder", "layer", index, "fs4", "A_re")] = (config.num_ssm,)
    flat = flatten(backbone)
    for key, shape in expected.items():
        if key not in flat:
            raise CheckpointError(f"{source} has no parameter {'/'.join(key)}; is it a BiGS checkpoint?")
        if tuple(flat[key].shape) != shape:
            raise CheckpointError(f"{source}: parameter {'/'.join(key)} has shape {tuple(flat[key].shape)} but "
                                  f"its config.json gives {shape}: the config does not match the weights")


# -------------------------------------------------------------------- load report
@dataclass
class LoadReport:
    """What happened to each parameter when a checkpoint was loaded into a model. Keys are
    Flax paths joined with "/" in both frameworks."""

    missing_keys: list[str] = field(default_factory=list)        # in the model, not the checkpoint: random init
    unexpected_keys: list[str] = field(default_factory=list)     # in the checkpoint, not the model: dropped
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # head shape differs: random init
    prefix_change: str | None = None                             # base <-> head re-rooting, if any

    @property
    def needs_init(self) -> bool:
        """Whether some parameter was missing or of another shape, so the model must be
        initialised to fill it in."""
        return bool(self.missing_keys or self.mismatched_keys)

    def messages(self, model_name: str, source: str) -> list[str]:
        """One warning line per kind of difference (prefix change, re-initialised, unused),
        naming the parameters, as from_pretrained logs them."""
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
    """Fit a checkpoint's tree to a model's param tree (both Flax layout, per-layer; the
    model's leaves need only a `.shape`): re-root base <-> head, keep what matches. Leaves
    that must be initialised afresh come back as None (see LoadReport.needs_init).

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

    flat_loaded = flatten(loaded)
    flat_init = flatten(init)
    result = {}
    for key, init_value in sorted(flat_init.items()):   # the same report whatever the tree order
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
    return unflatten(result), report
