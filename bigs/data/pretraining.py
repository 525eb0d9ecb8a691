"""Pretraining data: HDF5 shards of masked sequences, read, iterated, masked and built.

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

Other pieces: `ShardDataset` yields batches in a deterministic, resumable order
(`DataPosition`); `dynamic_mask` is BERT's 80/10/10 masking; `build_shards` turns raw text
into shards; `train_wordpiece` trains a new vocabulary; `build_shards_main` is the CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import tokenizers
from tokenizers import models, normalizers, pre_tokenizers, trainers

from ..errors import BiGSError, ConfigError, DataError

FIELDS = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids")
NSP_FIELD = "next_sentence_labels"
SHARD_SUFFIXES = (".hdf5", ".h5")
TEXT_SUFFIXES = (".txt", ".raw", ".text")
DATA_INFO = "data_info.json"
IGNORE_INDEX = -100  # label of unmasked positions, as the MLM loss expects
SPECIAL_TOKEN_NAMES = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Tags that keep the random streams of different uses apart (see `_rng`).
_STREAM_SHARD_ORDER, _STREAM_EXAMPLE_ORDER, _STREAM_DYNAMIC_MASK = 0, 1, 2
_STREAM_SPLIT, _STREAM_PACK, _STREAM_SHUFFLE, _STREAM_STATIC_MASK = 3, 4, 5, 6


def _rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
    """A generator determined by (seed, stream, keys); always 4 words so streams never alias."""
    words = [seed, stream, *keys, 0, 0][:4]
    return np.random.default_rng(words)


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    """The vocabulary facts masking needs."""

    vocab_size: int
    pad_id: int
    unk_id: int
    cls_id: int
    sep_id: int
    mask_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: tokenizers.Tokenizer) -> SpecialTokens:
        ids = [tokenizer.token_to_id(name) for name in SPECIAL_TOKEN_NAMES]
        missing = [name for name, index in zip(SPECIAL_TOKEN_NAMES, ids) if index is None]
        if missing:
            raise DataError(
                f"tokenizer vocabulary lacks {missing}; expected a BERT WordPiece vocabulary "
                f"containing all of {list(SPECIAL_TOKEN_NAMES)}"
            )
        return cls(tokenizer.get_vocab_size(with_added_tokens=True), *ids)

    def never_masked(self, input_ids: np.ndarray) -> np.ndarray:
        """[n, L] bool: True at [CLS], [SEP] and [PAD]."""
        return np.isin(input_ids, (self.cls_id, self.sep_id, self.pad_id))


# bert-base/large-uncased, the vocabulary of the published checkpoints.
BERT_UNCASED = SpecialTokens(vocab_size=30522, pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)


# ---------------------------------------------------------------------------------- reading


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> dict[str, np.ndarray]:
    """Reads one shard into int32 arrays, checking shapes and value ranges.

    Returns input_ids/input_mask/segment_ids [n, L], masked_lm_positions/masked_lm_ids
    [n, max_predictions], and next_sentence_labels [n] when the file has it. Ids are checked
    against `vocab_size` when given (else only for being non-negative).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"shard {str(path)!r} does not exist; expected an HDF5 file")
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


def labels_from_positions(batch: dict[str, np.ndarray]) -> np.ndarray:
    """MLM labels [n, L]: the original id at masked positions, IGNORE_INDEX (-100) elsewhere."""
    labels = np.full(batch["input_ids"].shape, IGNORE_INDEX, dtype=np.int32)
    rows, slots = np.nonzero(batch["masked_lm_positions"] > 0)
    labels[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    return labels


def positions_from_labels(labels: np.ndarray, max_predictions: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `labels_from_positions`: labels [n, L] -> positions, ids [n, max_predictions]."""
    selected = labels != IGNORE_INDEX
    counts = selected.sum(axis=1)
    if counts.size and counts.max() > max_predictions:
        raise ConfigError(f"{counts.max()} masked tokens in one sequence; expected at most {max_predictions}")
    rows, columns = np.nonzero(selected)  # row-major, so columns ascend within a row
    slots = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    positions = np.zeros((labels.shape[0], max_predictions), dtype=np.int32)
    ids = np.zeros_like(positions)
    positions[rows, slots] = columns
    ids[rows, slots] = labels[rows, columns]
    return positions, ids


def restore_original_ids(batch: dict[str, np.ndarray]) -> np.ndarray:
    """input_ids [n, L] with the masked positions put back to their original ids."""
    original = batch["input_ids"].copy()
    rows, slots = np.nonzero(batch["masked_lm_positions"] > 0)
    original[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    return original


# ---------------------------------------------------------------------------------- masking


def dynamic_mask(
    input_ids: np.ndarray,
    special_mask: np.ndarray,
    rng: np.random.Generator,
    *,
    vocab_size: int,
    mask_id: int,
    mask_prob: float = 0.15,
    max_predictions: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's masked-LM corruption of unmasked ids [n, L].

    In each row, round(mask_prob * #candidates) positions (at least 1, at most
    max_predictions) are chosen uniformly among those where `special_mask` [n, L] is False.
    Of the chosen, 80% become [MASK], 10% a uniformly random id, 10% stay unchanged.
    Returns (masked_ids [n, L], labels [n, L] = original id where chosen, else -100).
    """
    input_ids = np.asarray(input_ids)
    candidates = ~np.asarray(special_mask, dtype=bool)
    num_candidates = candidates.sum(axis=1)
    num_chosen = np.maximum(1, np.round(num_candidates * mask_prob)).astype(np.int64)
    if max_predictions is not None:
        num_chosen = np.minimum(num_chosen, max_predictions)
    num_chosen = np.where(num_candidates > 0, num_chosen, 0)
    # A uniformly random subset of size k: the k candidates with the smallest random scores.
    scores = np.where(candidates, rng.random(input_ids.shape), 2.0)
    ranks = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1, kind="stable")
    chosen = ranks < num_chosen[:, None]
    action = rng.random(input_ids.shape)
    random_ids = rng.integers(0, vocab_size, size=input_ids.shape)
    masked = np.where(chosen & (action < 0.8), mask_id, input_ids)
    masked = np.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, masked)
    labels = np.where(chosen, input_ids, IGNORE_INDEX)
    return masked.astype(np.int32), labels.astype(np.int32)


def mask_examples(
    examples: dict[str, np.ndarray],
    original_ids: np.ndarray,
    special: SpecialTokens,
    rng: np.random.Generator,
    mask_prob: float = 0.15,
    max_predictions: int = 20,
) -> dict[str, np.ndarray]:
    """`examples` with input_ids and masked_lm_* set from a fresh masking of original_ids [n, L]."""
    never = special.never_masked(original_ids) | (examples["input_mask"] == 0)
    masked, labels = dynamic_mask(
        original_ids, never, rng, vocab_size=special.vocab_size, mask_id=special.mask_id,
        mask_prob=mask_prob, max_predictions=max_predictions,
    )
    positions, ids = positions_from_labels(labels, max_predictions)
    return {**examples, "input_ids": masked, "masked_lm_positions": positions, "masked_lm_ids": ids}


# -------------------------------------------------------------------------------- iteration


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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataPosition:
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
        self.special_tokens = special_tokens or _special_tokens_near(self.files[0])
        self._cached: tuple[int, dict[str, np.ndarray]] | None = None

    @property
    def num_shards(self) -> int:
        return len(self.files)

    def shard_order(self, epoch: int) -> list[int]:
        """Indices into `files` in the order epoch `epoch` visits them."""
        if not self.shuffle:
            return list(range(self.num_shards))
        return [int(i) for i in _rng(self.seed, _STREAM_SHARD_ORDER, epoch).permutation(self.num_shards)]

    def load_shard(self, epoch: int, file_index: int) -> dict[str, np.ndarray]:
        """The examples of one shard in the order epoch `epoch` reads them (masked anew if dynamic)."""
        if self._cached is None or self._cached[0] != file_index:
            self._cached = (file_index, read_shard(self.files[file_index], self.special_tokens.vocab_size))
        shard = self._cached[1]
        if self.dynamic_masking:
            rng = _rng(self.seed, _STREAM_DYNAMIC_MASK, epoch, file_index)
            width = shard["masked_lm_positions"].shape[1]
            shard = mask_examples(shard, restore_original_ids(shard), self.special_tokens, rng,
                                  self.masked_lm_prob, width)
        if self.shuffle:
            rng = _rng(self.seed, _STREAM_EXAMPLE_ORDER, epoch, file_index)
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


def _special_tokens_near(shard: Path) -> SpecialTokens:
    """The special tokens recorded in data_info.json beside `shard`, else BERT uncased."""
    info_path = shard.parent / DATA_INFO
    if not info_path.is_file():
        return BERT_UNCASED
    try:
        return SpecialTokens(**json.loads(info_path.read_text(encoding="utf-8"))["special_tokens"])
    except (ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{str(info_path)!r} has no valid 'special_tokens' entry ({error}); "
            "expected one as written by build_shards"
        ) from error


# -------------------------------------------------------------------------------- tokenizer


def load_wordpiece(vocab_file: str | os.PathLike, lowercase: bool = True) -> tokenizers.Tokenizer:
    """BERT's WordPiece tokenizer (no [CLS]/[SEP] added) from a vocab.txt."""
    if not Path(vocab_file).is_file():
        raise DataError(f"vocabulary file {str(vocab_file)!r} does not exist; expected a BERT vocab.txt")
    tokenizer = tokenizers.Tokenizer(models.WordPiece.from_file(str(vocab_file), unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def _as_backend(tokenizer) -> tokenizers.Tokenizer:
    """A tokenizers.Tokenizer as given, the `.backend` of a BiGSTokenizer, or one read from a vocab path."""
    if isinstance(tokenizer, (str, os.PathLike)):
        return load_wordpiece(tokenizer)
    backend = getattr(tokenizer, "backend", tokenizer)
    if not isinstance(backend, tokenizers.Tokenizer):
        raise ConfigError(
            f"tokenizer of type {type(tokenizer).__name__}; expected a tokenizers.Tokenizer, "
            "an object with a .backend tokenizers.Tokenizer, or a vocab.txt path"
        )
    return backend


def train_wordpiece(
    files: Sequence[str | os.PathLike], vocab_size: int, output_dir: str | os.PathLike
) -> Path:
    """Trains a lowercase WordPiece vocabulary on text files; writes and returns output_dir/vocab.txt.

    Ids 0-4 are [PAD], [UNK], [CLS], [SEP], [MASK]. The text is cleaned as `build_shards`
    reads it (wikitext headings dropped, "@-@" escapes undone).
    """
    if vocab_size < len(SPECIAL_TOKEN_NAMES) + 1:
        raise ConfigError(f"vocab_size={vocab_size}; expected more than {len(SPECIAL_TOKEN_NAMES)}")
    tokenizer = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKEN_NAMES), show_progress=False
    )
    sentences = (s for path in _expand_inputs(files) for doc in read_documents(path) for s in doc)
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    return _write_vocab(tokenizer, Path(output_dir))


def _write_vocab(tokenizer: tokenizers.Tokenizer, output_dir: Path) -> Path:
    """Writes the vocabulary as vocab.txt (line number = id), atomically."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda item: item[1])
    if [index for _, index in by_id] != list(range(len(by_id))):
        raise DataError(f"tokenizer ids are not 0..{len(by_id) - 1} without gaps; cannot write a vocab.txt")
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "vocab.txt"
    text = "".join(token + "\n" for token, _ in by_id)
    _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


# ----------------------------------------------------------------------------- text reading

_WIKI_HEADING = re.compile(r"^(=+)\s.*\s\1$")  # " = Title = ", " = = Section = = "
_WIKI_ESCAPE = re.compile(r" @(.)@ ")  # wikitext writes "1 @,@ 000" for "1,000"
# After . ! ? (or one closing quote), unless the period ends a title such as "Mr.".
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"']))"
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)"
    r"\s+"
)


def read_documents(path: str | os.PathLike) -> list[list[str]]:
    """The documents of a text file, each a list of sentences.

    Blank lines separate documents (BERT's convention); the lines of a document are joined
    and split after ".", "!" or "?". Wikitext heading lines are dropped and its "@-@"
    escapes undone. CRLF and LF both work; text that is not UTF-8 is read as Latin-1.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise DataError(
            f"input file {str(path)!r} cannot be read ({error.strerror}); expected a text file"
        ) from error
    if b"\0" in raw:
        raise DataError(f"input file {str(path)!r} holds NUL bytes; expected plain text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # older Gutenberg texts (e.g. chesterton-ball.txt)
    documents, lines = [], []
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if lines:
                paragraph = _WIKI_ESCAPE.sub(r"\1", " ".join(lines))
                documents.append([s for s in _SENTENCE_BREAK.split(paragraph) if s])
                lines = []
        elif not _WIKI_HEADING.match(line):
            lines.append(line)
    return documents


def _expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by the *.txt/*.raw/*.text files in them and their
    subfolders, sorted."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise DataError(
                    f"input folder {str(path)!r} has no text files; expected *{', *'.join(TEXT_SUFFIXES)}"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input {str(path)!r} does not exist; expected a text file or a folder of them")
    if not files:
        raise DataError("no input files given; expected at least one text file or folder")
    return files


def _tokenize_documents(documents: list[list[str]], tokenizer: tokenizers.Tokenizer, piece_length: int):
    """Documents as lists of token-id lists; sentences longer than piece_length are cut into pieces."""
    flat = [sentence for document in documents for sentence in document]
    encodings = tokenizer.encode_batch(flat, add_special_tokens=False)
    tokenized, cursor = [], 0
    for document in documents:
        pieces = []
        for encoding in encodings[cursor : cursor + len(document)]:
            ids = encoding.ids
            pieces.extend(ids[start : start + piece_length] for start in range(0, len(ids), piece_length))
        cursor += len(document)
        if pieces:
            tokenized.append(pieces)
    return tokenized


# ---------------------------------------------------------------------------------- packing


def _pack_document(
    documents: list[list[list[int]]],
    index: int,
    max_seq_length: int,
    short_seq_prob: float,
    next_sentence: bool,
    rng: np.random.Generator,
) -> list[tuple[list[int], list[int], int]]:
    """Packs one document's sentences into (segment A, segment B, is_random_next) triples.

    Consecutive sentences are gathered until they reach a target length (the full length, or
    with probability short_seq_prob a shorter random one). With `next_sentence`, the gathered
    sentences are split at a random sentence boundary into A and B; half the time (always when
    there is a single sentence) B is replaced by text from a random other document and the
    sentences after A are put back for the next example. Without it, everything goes in A.
    """
    document = documents[index]
    max_tokens = max_seq_length - (3 if next_sentence else 2)
    examples = []
    chunk: list[list[int]] = []
    target = _target_length(max_tokens, short_seq_prob, rng)
    i = 0
    while i < len(document):
        chunk.append(document[i])
        i += 1
        if i < len(document) and sum(map(len, chunk)) < target:
            continue
        if not next_sentence:
            examples.append((_join(chunk)[:max_tokens], [], 0))
        else:
            split = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
            first = _join(chunk[:split])
            if len(documents) > 1 and (len(chunk) == 1 or rng.random() < 0.5):
                second = _random_continuation(documents, index, target - len(first), rng)
                i -= len(chunk) - split
                random_next = 1
            else:
                second, random_next = _join(chunk[split:]), 0
            if not second:  # one sentence and no other document: split the sentence itself
                half = len(first) // 2
                first, second = first[:half], first[half:]
            first, second = _truncate_pair(first, second, max_tokens)
            if first and second:
                examples.append((first, second, random_next))
        chunk = []
        target = _target_length(max_tokens, short_seq_prob, rng)
    return examples


def _target_length(max_tokens: int, short_seq_prob: float, rng: np.random.Generator) -> int:
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def _join(sentences: list[list[int]]) -> list[int]:
    return [token for sentence in sentences for token in sentence]


def _random_continuation(documents, avoid: int, length: int, rng: np.random.Generator) -> list[int]:
    """At least `length` tokens (if there are) from a random sentence on of another document."""
    other = int(rng.integers(0, len(documents) - 1))
    other += other >= avoid
    document = documents[other]
    tokens: list[int] = []
    for sentence in document[int(rng.integers(0, len(document))) :]:
        tokens.extend(sentence)
        if len(tokens) >= length:
            break
    return tokens


def _truncate_pair(first: list[int], second: list[int], max_tokens: int) -> tuple[list[int], list[int]]:
    """Trims the end of the longer segment until both fit in max_tokens."""
    while len(first) + len(second) > max_tokens:
        if len(first) > len(second):
            first = first[:-1]
        else:
            second = second[:-1]
    return first, second


def _to_arrays(
    examples: list[tuple[list[int], list[int], int]], special: SpecialTokens, max_seq_length: int,
    next_sentence: bool,
) -> dict[str, np.ndarray]:
    """[CLS] A [SEP] (B [SEP]) then [PAD]: input_ids, input_mask, segment_ids [n, L] (, NSP labels [n])."""
    n = len(examples)
    input_ids = np.full((n, max_seq_length), special.pad_id, dtype=np.int32)
    input_mask = np.zeros((n, max_seq_length), dtype=np.int32)
    segment_ids = np.zeros((n, max_seq_length), dtype=np.int32)
    next_sentence_labels = np.zeros(n, dtype=np.int32)
    for row, (first, second, random_next) in enumerate(examples):
        tokens = [special.cls_id, *first, special.sep_id]
        if second:
            tokens += [*second, special.sep_id]
            segment_ids[row, len(first) + 2 : len(tokens)] = 1
        input_ids[row, : len(tokens)] = tokens
        input_mask[row, : len(tokens)] = 1
        next_sentence_labels[row] = random_next
    arrays = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    if next_sentence:
        arrays[NSP_FIELD] = next_sentence_labels
    return arrays


# --------------------------------------------------------------------------------- building


def build_shards(
    input_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    tokenizer,
    max_seq_length: int = 128,
    masked_lm_prob: float = 0.15,
    max_predictions_per_seq: int = 20,
    short_seq_prob: float = 0.1,
    dupe_factor: int = 1,
    heldout_fraction: float = 0.01,
    examples_per_shard: int = 16384,
    seed: int = 0,
    next_sentence: bool = True,
    overwrite: bool = False,
) -> dict:
    """Builds statically masked train and held-out shards from raw text; returns data_info.

    Documents (see `read_documents`) are shuffled by `seed`; a `heldout_fraction` of them
    (at least one when the fraction is positive) go to the held-out split, so the splits share
    no document. Train documents are packed `dupe_factor` times (each with its own masks),
    held-out ones once. Examples are shuffled, masked with `dynamic_mask` and written as
    output_dir/train_shard_NNNNN.hdf5 and test_shard_NNNNN.hdf5, beside vocab.txt and
    data_info.json. The output is a function of the inputs and the arguments alone.

    Args:
      tokenizer: a tokenizers.Tokenizer (BERT WordPiece), a BiGSTokenizer (its `.backend`),
        or the path of a vocab.txt.
      next_sentence: pack [CLS] A [SEP] B [SEP] pairs with next_sentence_labels; False packs
        single segments (segment_ids all 0), as the corpus BiGS was trained on.
      overwrite: replace shards already in output_dir instead of refusing.
    """
    _check_build_arguments(max_seq_length, masked_lm_prob, max_predictions_per_seq, short_seq_prob,
                           dupe_factor, heldout_fraction, examples_per_shard)
    source = str(tokenizer) if isinstance(tokenizer, (str, os.PathLike)) else type(tokenizer).__name__
    backend = _as_backend(tokenizer)
    special = SpecialTokens.from_tokenizer(backend)
    output_dir = Path(output_dir)
    _prepare_output_dir(output_dir, overwrite)
    vocab_path = _write_vocab(backend, output_dir)

    files = _expand_inputs(input_files)
    piece_length = max(1, (max_seq_length - 3) // 2)  # so a long sentence still leaves room for B
    text_documents = [document for path in files for document in read_documents(path)]
    documents = _tokenize_documents(text_documents, backend, piece_length)
    if not documents:
        raise DataError(f"input files {[str(f) for f in files]} hold no text; "
                        "expected documents separated by blank lines")
    order = _rng(seed, _STREAM_SPLIT).permutation(len(documents))
    num_heldout = 0
    if heldout_fraction > 0 and len(documents) > 1:
        num_heldout = min(len(documents) - 1, max(1, round(heldout_fraction * len(documents))))
    splits = {
        "test": ([documents[i] for i in order[:num_heldout]], 1),
        "train": ([documents[i] for i in order[num_heldout:]], dupe_factor),
    }

    info = {
        "layout": "per-key HDF5 shards, as read by the original BiGS (academic-budget-bert)",
        "vocab_size": special.vocab_size,
        "special_tokens": dataclasses.asdict(special),
        "tokenizer": {"source": source, "vocab_file": vocab_path.name,
                      "vocab_sha256": hashlib.sha256(vocab_path.read_bytes()).hexdigest()},
        "max_seq_length": max_seq_length,
        "max_predictions_per_seq": max_predictions_per_seq,
        "masked_lm_prob": masked_lm_prob,
        "short_seq_prob": short_seq_prob,
        "dupe_factor": dupe_factor,
        "heldout_fraction": heldout_fraction,
        "examples_per_shard": examples_per_shard,
        "next_sentence": next_sentence,
        "seed": seed,
        "input_files": [str(f) for f in files],
        "num_documents": {}, "num_examples": {}, "num_shards": {}, "num_masked_tokens": {},
    }
    for split_index, (split, (split_documents, repeats)) in enumerate(splits.items()):
        pack_rng = _rng(seed, _STREAM_PACK, split_index)
        examples = [
            example
            for _ in range(repeats)
            for index in range(len(split_documents))
            for example in _pack_document(split_documents, index, max_seq_length, short_seq_prob,
                                          next_sentence, pack_rng)
        ]
        arrays = _to_arrays(examples, special, max_seq_length, next_sentence)
        shuffled = _rng(seed, _STREAM_SHUFFLE, split_index).permutation(len(examples))
        arrays = {name: values[shuffled] for name, values in arrays.items()}
        mask_rng = _rng(seed, _STREAM_STATIC_MASK, split_index)
        arrays = mask_examples(arrays, arrays["input_ids"], special, mask_rng, masked_lm_prob,
                               max_predictions_per_seq)
        num_shards = math.ceil(len(examples) / examples_per_shard)
        for shard in range(num_shards):
            rows = slice(shard * examples_per_shard, (shard + 1) * examples_per_shard)
            path = output_dir / f"{split}_shard_{shard:05d}.hdf5"
            write_shard(path, {name: values[rows] for name, values in arrays.items()})
        info["num_documents"][split] = len(split_documents)
        info["num_examples"][split] = len(examples)
        info["num_shards"][split] = num_shards
        info["num_masked_tokens"][split] = int((arrays["masked_lm_positions"] > 0).sum())

    _write_atomically(output_dir / DATA_INFO,
                      lambda tmp: tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8"))
    return info


def _check_build_arguments(max_seq_length, masked_lm_prob, max_predictions_per_seq, short_seq_prob,
                           dupe_factor, heldout_fraction, examples_per_shard) -> None:
    checks = [
        ("max_seq_length", max_seq_length, max_seq_length >= 5, "an integer >= 5 ([CLS] A [SEP] B [SEP])"),
        ("masked_lm_prob", masked_lm_prob, 0 < masked_lm_prob < 1, "a probability in (0, 1)"),
        ("max_predictions_per_seq", max_predictions_per_seq, max_predictions_per_seq >= 1,
         "a positive integer"),
        ("short_seq_prob", short_seq_prob, 0 <= short_seq_prob <= 1, "a probability in [0, 1]"),
        ("dupe_factor", dupe_factor, dupe_factor >= 1, "a positive integer"),
        ("heldout_fraction", heldout_fraction, 0 <= heldout_fraction < 1, "a fraction in [0, 1)"),
        ("examples_per_shard", examples_per_shard, examples_per_shard >= 1, "a positive integer"),
    ]
    for name, value, ok, expected in checks:
        if not ok:
            raise ConfigError(f"{name}={value}; expected {expected}")


def _prepare_output_dir(output_dir: Path, overwrite: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise DataError(f"output_dir {str(output_dir)!r} is a file; expected a folder")
    output_dir.mkdir(parents=True, exist_ok=True)
    old = sorted(p for p in output_dir.iterdir() if re.fullmatch(r"(train|test)_shard_\d+\.hdf5", p.name))
    if old and not overwrite:
        raise DataError(
            f"output_dir {str(output_dir)!r} already holds {len(old)} shards (e.g. {old[0].name}); "
            "expected an empty folder, or pass overwrite=True (--overwrite)"
        )
    for path in old:
        path.unlink()


def write_shard(path: str | os.PathLike, shard: dict[str, np.ndarray]) -> None:
    """Writes a shard in the layout of the module docstring, atomically (tmp file, then rename)."""
    dtypes = {"input_mask": "i1", "segment_ids": "i1", NSP_FIELD: "i1"}

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            for name, values in shard.items():
                f.create_dataset(name, data=values, dtype=dtypes.get(name, "i4"), compression="gzip")

    _write_atomically(Path(path), write)


def _write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# -------------------------------------------------------------------------------------- CLI


def build_shards_main(argv: Sequence[str] | None = None) -> int:
    """`bigs build-shards`: raw text -> pretraining shards. Returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="bigs build-shards",
        description="Build masked-LM pretraining shards (HDF5, the original BiGS layout) from raw text.",
    )
    parser.add_argument("--input", action="append", nargs="+", required=True,
                        help="text files or folders of *.txt/*.raw files; repeatable")
    parser.add_argument("--output_dir", required=True,
                        help="folder for the shards, vocab.txt and data_info.json")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab_file", help="a BERT WordPiece vocab.txt")
    vocab.add_argument("--train_vocab_size", type=int, help="train a new WordPiece vocabulary of this size")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--max_predictions_per_seq", type=int, default=20)
    parser.add_argument("--masked_lm_prob", type=float, default=0.15)
    parser.add_argument("--short_seq_prob", type=float, default=0.1)
    parser.add_argument("--dupe_factor", type=int, default=1)
    parser.add_argument("--heldout_fraction", type=float, default=0.01)
    parser.add_argument("--examples_per_shard", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no_next_sentence", action="store_true",
                        help="single segments [CLS] A [SEP], no next_sentence_labels (as BiGS was trained)")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in --output_dir")
    args = parser.parse_args(argv)
    inputs = [item for group in args.input for item in group]
    try:
        if args.train_vocab_size is not None:
            _prepare_output_dir(Path(args.output_dir), args.overwrite)  # fail before training, not after
            tokenizer = train_wordpiece(inputs, args.train_vocab_size, args.output_dir)
        else:
            tokenizer = args.vocab_file
        info = build_shards(
            inputs, args.output_dir, tokenizer,
            max_seq_length=args.max_seq_length, masked_lm_prob=args.masked_lm_prob,
            max_predictions_per_seq=args.max_predictions_per_seq, short_seq_prob=args.short_seq_prob,
            dupe_factor=args.dupe_factor, heldout_fraction=args.heldout_fraction,
            examples_per_shard=args.examples_per_shard, seed=args.seed,
            next_sentence=not args.no_next_sentence, overwrite=args.overwrite,
        )
    except BiGSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for split in ("train", "test"):
        print(f"{split}: {info['num_documents'][split]} documents -> {info['num_examples'][split]} examples "
              f"in {info['num_shards'][split]} shards, {info['num_masked_tokens'][split]} masked tokens")
    print(f"wrote {args.output_dir} (vocab_size {info['vocab_size']}, "
          f"max_seq_length {info['max_seq_length']})")
    return 0
