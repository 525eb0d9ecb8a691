"""Convert a checkpoint folder between the Flax and the PyTorch files, with numpy only.

    convert("JunxiongWang/BiGS_512", "BiGS_512_torch")            # -> model.safetensors
    convert("BiGS_512_torch", "BiGS_512_flax", to="flax")          # -> flax_model.msgpack

The weights are converted by bigs.weights (Flax layout <-> PyTorch layout: dense kernels
transposed, names joined with "."); config.json and the tokenizer files are copied byte for
byte. Flax -> PyTorch -> Flax gives back the same flax_model.msgpack, byte for byte. This is
what `bigs convert` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import weights
from .config import CONFIG_NAME, BiGSConfig
from .errors import CheckpointError, ConfigError
from .files import check_writable_folder, read_json_object, write_bytes
from .tokenizer import BiGSTokenizer

TARGETS = ("torch", "flax")
# Copied when present, byte for byte.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def convert(source: str | os.PathLike, destination: str | os.PathLike, to: str = "torch",
            overwrite: bool = False, **hub_kwargs) -> list[str]:
    """Write `source`'s checkpoint (a folder or hub id) into the folder `destination`, with
    the weights as model.safetensors (to="torch", PyTorch layout) or flax_model.msgpack
    (to="flax", Flax layout), plus config.json and the tokenizer files. `hub_kwargs`:
    revision, cache_dir, token, local_files_only.

    Returns the paths written. Each file is written atomically and nothing else in
    `destination` is touched, except that with `overwrite` a weights file of the other format
    already there is rewritten with the same weights, so the folder's two files agree.
    Raises ConfigError for a bad target, a source config.json that is not a valid config, or
    a destination that already holds one of those files (unless `overwrite`) or cannot be
    written; CheckpointError when the source's weights cannot be read or do not fit its config,
    or one of its tokenizer files is damaged (DataError for a vocab.txt that is not one).
    """
    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: expected one of {TARGETS}")
    source, destination = os.fspath(source), Path(destination)
    if Path(source).resolve() == destination.resolve():
        raise ConfigError(f"the destination {str(destination)!r} is the source folder; pick another folder")
    formats = {weights.SAFE_WEIGHTS_NAME: weights.safetensors_bytes, weights.FLAX_WEIGHTS_NAME: weights.msgpack_bytes}
    weights_name = weights.SAFE_WEIGHTS_NAME if to == "torch" else weights.FLAX_WEIGHTS_NAME
    check_writable_folder(destination, "destination")
    taken = [name for name in (CONFIG_NAME, *formats, *TOKENIZER_FILES) if (destination / name).exists()]
    if taken and not overwrite:
        raise ConfigError(f"{str(destination)!r} already holds {', '.join(taken)}; pick an empty folder "
                          "or pass --overwrite to replace them")

    config_path = weights.resolve_file(source, CONFIG_NAME, **hub_kwargs)
    config = BiGSConfig.from_json_file(config_path)          # ConfigError when it is not a valid config
    params = weights.read_params(source, prefer_safetensors=to == "flax", **hub_kwargs)
    weights.check_fits_config(params, config, source)
    copies = {CONFIG_NAME: config_path}
    for name in TOKENIZER_FILES:
        path = weights.resolve_file(source, name, required=False, **hub_kwargs)
        if path is not None:
            copies[name] = path
    _check_tokenizer(copies)

    # A weights file of the other format already in destination is rewritten too (with
    # --overwrite): a folder whose two files held different models would load differently
    # in each framework.
    names = [weights_name] + [name for name in formats if name != weights_name and name in taken]
    written = []
    for name in names:
        written.append(str(destination / name))
        write_bytes(written[-1], formats[name](params))
    for name, path in copies.items():
        written.append(str(destination / name))
        write_bytes(written[-1], Path(path).read_bytes())
    return written


def _check_tokenizer(copies: dict[str, str]) -> None:
    """Read the tokenizer files about to be copied, so a damaged one is refused (CheckpointError
    or DataError naming it) rather than copied into a folder that then cannot be loaded."""
    if "tokenizer.json" in copies:
        BiGSTokenizer.from_pretrained(copies["tokenizer.json"])
    if "vocab.txt" in copies:
        BiGSTokenizer.from_vocab(copies["vocab.txt"])
    if "tokenizer_config.json" in copies:
        read_json_object(copies["tokenizer_config.json"], "the tokenizer settings save_pretrained writes",
                         CheckpointError)
