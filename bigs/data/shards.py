"""Pretraining shards: the HDF5 format, reading and writing it, and resumable batches over it.

Shard layout
------------
A shard is an HDF5 file with one dataset per field, each row one example:

    input_ids            int32 [n, max_seq_length]   [CLS] A [SEP] (B [SEP]) then 0-padding
    input_mask           int8  [n, max_seq_length]   1 for tokens, 0 for padding
    segment_ids          int8  [n, max_seq_length]   0 for [CLS] A [SEP], 1 for B [SEP]
    masked_lm_positions  int32 [n, max_predictions]  ascending, then 0-padded (0 = "none")
    masked_lm_ids        int32 [n, max_predictions]  original ids there, 0-padded
    next_sentence_labels int8  [n]                   1 when B is a random segment (optional)

input_ids hold the *masked* inputs ([MASK], a random id, or the original id unchanged);
masked_lm_ids hold the originals. Position 0 is always [CLS], which is never masked, so 0 is
free to mean "none". Train shards are named `train_shard_NNNNN.hdf5` and held-out ones
`test_shard_NNNNN.hdf5`, side by side in one folder.

Why this layout: the original's README (pretrain.md, bigs_dataset/README.md) describes a
shard as "a two dimension array ... shape (5, number of examples)", but the code that reads
it (`bigs_dataset/pretraining_dataset.py`, taken from academic-budget-bert) opens the five
keys above as separate datasets and keeps them as a list of five arrays (the "[5, n]" of the
README is that list, not one array on disk); it finds files by "train"/"test" in their name;
it takes the masked positions up to the first 0 and turns them into per-token labels; it
never reads next_sentence_labels (BiGS is trained without NSP). academic-budget-bert's
writer stores the dtypes listed above with gzip compression. So the shards we write load
unchanged in the original, and its shards load here.

`read_shard` also accepts one integer dataset of shape [5, n, seq_len] (the README read
literally), with masked_lm_positions/ids padded to seq_len.

`ShardDataset` yields batches in a deterministic, resumable order (`DataPosition`), re-masking
them each epoch if asked (bigs.data.masking). Shards are built from raw text by
bigs.data.build (`bigs build-shards`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from ..errors import ConfigError, DataError
from ..files import atomic_writer, require_file
from .masking import BERT_UNCASED, SpecialTokens, mask_examples, restore_original_ids

FIELDS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids")
NSP_FIELD = "next_sentence_labels"
SHARD_SUFFIXES = (".hdf5", ".h5")
DATA_INFO = "data_info.json"

# Tags that keep the random streams of different uses apart (see `_rng`): those of reading
# here and those of building (bigs.data.build), in one place so no two share a tag.
STREAM_SHARD_ORDER, STREAM_EXAMPLE_ORDER, STREAM_DYNAMIC_MASK = 0, 1, 2
STREAM_SPLIT, STREAM_PACK, STREAM_SHUFFLE, STREAM_STATIC_MASK = 3, 4, 5, 6


def stream_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """A generator determined by (seed, stream, keys); always 4 words so streams never alias."""
    words = [seed, stream, *keys, 0, 0][:4]
    return np.random.default_rng(words)


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """Reads one shard into int32 arrays, checking shapes and value ranges.

    Returns input_ids/input_mask/segment_ids [n, L], masked_lm_positions/masked_lm_ids
    [n, max_predictions], and next_sentence_labels [n] when the file has it. Ids are checked
    against `vocab_size` when given (else only for being non-negative).

    Raises:
      DataError: the file is missing or not HDF5, lacks the datasets, holds non-integer data,
        or has shapes that disagree or values out of range (named with row and column).
    """
    path = Path(path)
    require_file(path, "shard", "an HDF5 file")
    if not h5py.is_hdf5(path):
        raise DataError(f"shard {str(path)!r} is not an HDF5 file; expected a pretraining shard (.hdf5)")
    try:
        with h5py.File(path, "r") as f:
            names = sorted(f.keys())
            single = f[names[0]] if len(names) == 1 else None
            if all(name in f for name in FIELDS):
                shard = {name: _read_int_dataset(path, f, name) for name in FIELDS}
                if NSP_FIELD in f:
                    shard[NSP_FIELD] = _read_int_dataset(path, f, NSP_FIELD)
            elif isinstance(single, h5py.Dataset) and single.ndim == 3 and single.shape[0] == 5:
                stacked = _read_int_dataset(path, f, names[0])
                shard = dict(zip(FIELDS, stacked))
            else:
                raise DataError(
                    f"shard {str(path)!r} holds datasets {names}; expected the datasets {list(FIELDS)} "
                    "or a single integer array of shape [5, n_examples, seq_len]"
                )
    except OSError as error:
        raise DataError(f"shard {str(path)!r} cannot be read as HDF5: {error}") from error
    _check_shard(path, shard, vocab_size)
    return shard


def _read_int_dataset(path: Path, f: h5py.File, name: str) -> np.ndarray:
    dataset = f[name]
    if not isinstance(dataset, h5py.Dataset) or not np.issubdtype(dataset.dtype, np.integer):
        raise DataError(f"shard {str(path)!r}: {name!r} is not an integer array; expected integer token data")
    return np.asarray(dataset[()], dtype=np.int32)


def _check_shard(path: Path, shard: dict[str, np.ndarray], vocab_size: int | None) -> None:
    """Raises DataError unless the arrays have consistent shapes and in-range values."""
    where = f"shard {str(path)!r}"
    tokens = shard["input_ids"]
    if tokens.ndim != 2:
        raise DataError(f"{where}: input_ids has shape {tokens.shape}; expected [n_examples, seq_len]")
    n, length = tokens.shape
    for name in ("input_mask", "segment_ids"):
        if shard[name].shape != (n, length):
            raise DataError(
                f"{where}: {name} has shape {shard[name].shape}; expected {(n, length)} like input_ids"
            )
    positions, ids = shard["masked_lm_positions"], shard["masked_lm_ids"]
    if positions.ndim != 2 or positions.shape[0] != n or ids.shape != positions.shape:
        raise DataError(
            f"{where}: masked_lm_positions {positions.shape} and masked_lm_ids {ids.shape}; "
            f"expected both [{n}, max_predictions]"
        )
    if NSP_FIELD in shard and shard[NSP_FIELD].shape != (n,):
        raise DataError(f"{where}: {NSP_FIELD} has shape {shard[NSP_FIELD].shape}; expected ({n},)")
    id_limit = f"0..{vocab_size - 1}" if vocab_size else "non-negative"
    ranges = {
        "input_ids": (0, vocab_size, id_limit),
        "masked_lm_ids": (0, vocab_size, id_limit),
        "input_mask": (0, 2, "0 or 1"),
        "segment_ids": (0, 2, "0 or 1"),
        "masked_lm_positions": (0, length, f"0..{length - 1}"),
    }
    for name, (low, high, expected) in ranges.items():
        values = shard[name]
        bad = (values < low) | (values >= high) if high else values < low
        if values.size and bad.any():
            row, column = np.argwhere(bad)[0]
            raise DataError(
                f"{where}: {name}[{row}, {column}] = {values[row, column]} is out of range; "
                f"expected {expected}"
            )


def write_shard(path: str | os.PathLike, shard: dict[str, np.ndarray]) -> None:
    """Writes a shard in the layout of the module docstring, atomically (tmp file, then rename).

    `shard` maps field names to integer arrays ([n, L], [n, max_predictions] or [n]); they are
    stored with the layout's dtypes (int8 for input_mask, segment_ids, next_sentence_labels;
    int32 otherwise), gzip-compressed. Values are not checked: `read_shard` checks them.
    """
    dtypes = {"input_mask": "i1", "segment_ids": "i1", NSP_FIELD: "i1"}
    with atomic_writer(path) as tmp, h5py.File(tmp, "w") as f:
        for name, values in shard.items():
            f.create_dataset(name, data=values, dtype=dtypes.get(name, "i4"), compression="gzip")


@dataclasses.dataclass(frozen=True)
class DataPosition:
    """Where the next batch starts: saved with a checkpoint, passed back to resume exactly.

    `shard` indexes the epoch's shuffled shard order; `offset` counts the examples of that
    shard already consumed. `seed` and `num_shards` guard against resuming a different stream.
    """

    epoch: int = 0
    shard: int = 0
    offset: int = 0
    seed: int = 0
    num_shards: int = 0

    def to_dict(self) -> dict[str, int]:
        """The position as the JSON a checkpoint stores it in."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataPosition:
        """The position `to_dict` wrote; raises ConfigError unless `values` holds exactly its
        fields as non-negative integers."""
        names = {field.name for field in dataclasses.fields(cls)}
        if set(values) != names or not all(isinstance(v, int) and v >= 0 for v in values.values()):
            raise ConfigError(
                f"data position {values!r}; expected non-negative integers for exactly {sorted(names)}"
            )
        return cls(**values)


class ShardDataset:
    """Batches from a set of shards, in an order fixed by `seed` and resumable from a DataPosition.

    Each epoch visits the shards in an order shuffled by (seed, epoch), and the examples of
    each shard in an order shuffled by (seed, epoch, shard); batches run on across shard and
    epoch boundaries. With `dynamic_masking`, every epoch re-masks the original ids with a
    generator seeded by (seed, epoch, shard), so it too is reproducible.

    Args:
      folder_or_files: a folder (its *.hdf5/*.h5 files whose name contains `split`, sorted by
        name), one shard file, or a list of shard files.
      max_shards: keep only the first this many shards (after sorting).
      seed: the seed of all shuffling and dynamic masking.
      split: the name filter for folders ("train" or "test", as the original); None keeps all.
      shuffle: False reads shards and examples in file order (for evaluation).
      dynamic_masking: re-mask on the fly instead of using the shards' static masks.
      masked_lm_prob: the masking rate of dynamic masking.
      special_tokens: vocabulary facts for checking ids and masking; by default those in the
        folder's data_info.json, else BERT uncased.

    Attributes: files (the shard paths), special_tokens, and data_info, the data_info.json
    they were read from (None when given, or when there is none and BERT uncased's are used).

    Raises:
      DataError: no shards are found, a file is missing, or data_info.json is malformed.
      ConfigError: max_shards is below 1.
    """

    def __init__(
        self,
        folder_or_files: str | os.PathLike | Sequence[str | os.PathLike],
        max_shards: int | None = None,
        seed: int = 0,
        *,
        split: str | None = "train",
        shuffle: bool = True,
        dynamic_masking: bool = False,
        masked_lm_prob: float = 0.15,
        special_tokens: SpecialTokens | None = None,
    ):
        self.files = _list_shards(folder_or_files, split)
        if max_shards is not None:
            if max_shards < 1:
                raise ConfigError(f"max_shards={max_shards}; expected a positive number or None")
            self.files = self.files[:max_shards]
        self.seed = seed
        self.shuffle = shuffle
        self.dynamic_masking = dynamic_masking
        self.masked_lm_prob = masked_lm_prob
        # the data_info.json the special tokens were read from; None when given or BERT uncased's
        self.data_info: Path | None = None
        if special_tokens is None:
            special_tokens, self.data_info = _special_tokens_near(self.files[0])
        self.special_tokens = special_tokens
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def num_shards(self) -> int:
        """Number of shard files."""
        return len(self.files)

    def shard_order(self, epoch: int) -> list[int]:
        """Indices into `files` in the order epoch `epoch` visits them."""
        if not self.shuffle:
            return list(range(self.num_shards))
        return [int(i) for i in stream_rng(self.seed, STREAM_SHARD_ORDER, epoch).permutation(self.num_shards)]

    def load_shard(self, epoch: int, file_index: int) -> dict[str, np.ndarray]:
        """The examples of one shard in the order epoch `epoch` reads them (masked anew if dynamic)."""
        if self._cached is None or self._cached[0] != file_index:
            self._cached = (file_index, read_shard(self.files[file_index], self.special_tokens.vocab_size))
        shard = self._cached[1]
        if self.dynamic_masking:
            rng = stream_rng(self.seed, STREAM_DYNAMIC_MASK, epoch, file_index)
            width = shard["masked_lm_positions"].shape[1]
            shard = mask_examples(shard, restore_original_ids(shard), self.special_tokens, rng,
                                  self.masked_lm_prob, width)
        if self.shuffle:
            rng = stream_rng(self.seed, STREAM_EXAMPLE_ORDER, epoch, file_index)
            order = rng.permutation(len(shard["input_ids"]))
            shard = {name: values[order] for name, values in shard.items()}
        return shard

    def iterate(
        self,
        batch_size: int,
        start: DataPosition | None = None,
        num_epochs: int | None = None,
        drop_remainder: bool = True,
    ) -> Iterator[tuple[dict[str, np.ndarray], DataPosition]]:
        """Yields (batch, position of the next batch); batch arrays have `batch_size` rows.

        Runs forever when `num_epochs` is None. Passing a yielded position back as `start`
        continues with exactly the batches that would have followed it. At the end of the
        last epoch a partial batch is dropped, or yielded when `drop_remainder` is False.
        Batch arrays are int32: input_ids/input_mask/segment_ids [batch_size, L],
        masked_lm_positions/ids [batch_size, max_predictions] (and next_sentence_labels).

        Raises:
          ConfigError: batch_size < 1, or `start` belongs to another seed, shard count or shard.
          DataError: the shards hold no examples.
        """
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}; expected a positive number")
        position = start or DataPosition(seed=self.seed, num_shards=self.num_shards)
        if (position.seed, position.num_shards) != (self.seed, self.num_shards):
            raise ConfigError(
                f"cannot resume from {position}: it was saved with seed={position.seed} over "
                f"{position.num_shards} shards; this dataset has seed={self.seed} and "
                f"{self.num_shards} shards"
            )
        epoch, shard_index, offset = position.epoch, position.shard, position.offset
        pending: list[dict[str, np.ndarray]] = []
        num_pending = 0
        while num_epochs is None or epoch < num_epochs:
            whole_epoch, examples_this_epoch = shard_index == 0 and offset == 0, 0
            order = self.shard_order(epoch)
            while shard_index < self.num_shards:
                shard = self.load_shard(epoch, order[shard_index])
                size = len(shard["input_ids"])
                examples_this_epoch += size
                if offset > size:
                    raise ConfigError(
                        f"cannot resume at example {offset} of {str(self.files[order[shard_index]])!r}; "
                        f"expected at most {size}, the examples it holds"
                    )
                while offset < size:
                    take = min(batch_size - num_pending, size - offset)
                    pending.append({name: values[offset : offset + take] for name, values in shard.items()})
                    num_pending += take
                    offset += take
                    if num_pending == batch_size:
                        yield _concatenate(pending), self._next_position(epoch, shard_index, offset, size)
                        pending, num_pending = [], 0
                shard_index, offset = shard_index + 1, 0
            if whole_epoch and examples_this_epoch == 0:
                raise DataError(f"the shards {[str(f) for f in self.files]} hold no examples")
            epoch, shard_index = epoch + 1, 0
        if pending and not drop_remainder:
            yield _concatenate(pending), DataPosition(epoch, 0, 0, self.seed, self.num_shards)

    def _next_position(self, epoch: int, shard_index: int, offset: int, size: int) -> DataPosition:
        if offset == size:  # point past a finished shard so resuming does not reload it
            shard_index, offset = shard_index + 1, 0
            if shard_index == self.num_shards:
                epoch, shard_index = epoch + 1, 0
        return DataPosition(epoch, shard_index, offset, self.seed, self.num_shards)


def _concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _list_shards(folder_or_files, split: str | None) -> list[Path]:
    if isinstance(folder_or_files, (str, os.PathLike)):
        source = Path(folder_or_files)
        if source.is_dir():
            files = sorted(
                path for path in source.iterdir()
                if path.is_file() and path.suffix in SHARD_SUFFIXES and (split is None or split in path.name)
            )
            if not files:
                pattern = f"*{split}*" if split else "*"
                raise DataError(
                    f"no shards in folder {str(source)!r}; "
                    f"expected files named {pattern}.hdf5 or {pattern}.h5"
                )
            return files
        candidates = [source]
    else:
        candidates = [Path(path) for path in folder_or_files]
    if not candidates:
        raise DataError("no shard files given; expected a folder or at least one .hdf5 file")
    missing = [str(path) for path in candidates if not path.is_file()]
    if missing:
        raise DataError(f"shard files {missing} do not exist; expected existing .hdf5 files or a folder")
    return candidates


def _special_tokens_near(shard: Path) -> tuple[SpecialTokens, Path | None]:
    """(the special tokens recorded in data_info.json beside `shard`, that file), else
    (BERT uncased's, None)."""
    info_path = shard.parent / DATA_INFO
    if not info_path.is_file():
        return BERT_UNCASED, None
    try:
        return SpecialTokens(**json.loads(info_path.read_text(encoding="utf-8"))["special_tokens"]), info_path
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{str(info_path)!r} has no valid 'special_tokens' entry ({error}); "
            "expected one as written by build_shards"
        ) from error
