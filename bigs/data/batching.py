"""Sentence(-pair) examples as token ids, and the padded batches the classifier reads.

    encoded = encode(tokenizer, examples, max_seq_length=128)      # once per split
    batching = Batching("longest", max_seq_length=128)
    for indices in update_order(encoded.lengths, 32, epoch=0, seed=42, bucket=batching.bucket):
        batch = make_batch(encoded, indices, 32, batching.width(longest), pad_id)

Two ways to pad a batch (`Batching.mode`, the tokenizer's words for the same thing):
  longest     each batch is padded to its longest example, rounded up to a multiple of
              `pad_to_multiple_of` (few distinct shapes, so few recompilations), and training
              batches are drawn from buckets of similar length: little padding.
  max_length  every example is padded to max_seq_length, as the original run_glue.py did.
How the model treats the pads is the model's `pad_mode`, not this module's business.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .glue import Examples

BATCHING_MODES = ("longest", "max_length")
# Training batches are bucketed by length within windows of this many batches: a window is
# large enough to group similar lengths, small enough that batch order stays random.
BUCKET_WINDOW = 64


@dataclass(frozen=True)
class Batching:
    """How wide a batch is: `mode` "longest" or "max_length" (see the module docstring)."""

    mode: str
    max_seq_length: int
    pad_to_multiple_of: int = 32

    def __post_init__(self):
        if self.mode not in BATCHING_MODES:
            raise ConfigError(f"batching={self.mode!r}; expected one of {BATCHING_MODES}")
        if self.max_seq_length < 1 or self.pad_to_multiple_of < 1:
            raise ConfigError(f"max_seq_length={self.max_seq_length} and pad_to_multiple_of="
                              f"{self.pad_to_multiple_of}; expected positive integers")

    @property
    def bucket(self) -> bool:
        """Whether training batches group examples of similar length."""
        return self.mode == "longest"

    def width(self, longest: int) -> int:
        """Batch width in tokens for a batch whose longest example has `longest` tokens."""
        if self.mode == "max_length":
            return self.max_seq_length
        multiple = self.pad_to_multiple_of
        return min(self.max_seq_length, multiple * math.ceil(longest / multiple))


@dataclass
class Encoded:
    """One split as token ids, unpadded: lists of [length_i] int32 arrays."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    # [n] int32 label ids or float32 targets; None for test splits
    labels: np.ndarray | None
    # [n] bool: whether truncation to max_seq_length cut tokens from the example; None if unknown
    truncated: np.ndarray | None = None

    @property
    def lengths(self) -> np.ndarray:
        """[n] int64: each example's length in tokens."""
        return np.fromiter((len(ids) for ids in self.input_ids), np.int64, len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer, examples: Examples, max_seq_length: int, name: str = "texts") -> Encoded:
    """Tokenise once, [CLS] A [SEP] (B [SEP]), truncated to max_seq_length; padding happens per batch.

    When truncation cut any example, logs one warning on the "bigs" logger saying how many
    of the `name` (e.g. "train examples") were cut; `Encoded.truncated` says which.
    """
    out = tokenizer(examples.text_a, examples.text_b, max_length=max_seq_length, padding=False,
                    truncation=True, return_numpy=False, return_truncated=True)
    truncated = np.asarray(out["truncated"], bool)
    if truncated.any():
        logging.getLogger("bigs").warning(f"{int(truncated.sum())} of {len(truncated)} {name} are longer than "
                                          f"{max_seq_length} tokens and were truncated (max_seq_length)")
    return Encoded([np.asarray(ids, np.int32) for ids in out["input_ids"]],
                   [np.asarray(types, np.int32) for types in out["token_type_ids"]], examples.labels, truncated)


def make_batch(data: Encoded, indices: np.ndarray, batch_size: int, width: int, pad_id: int) -> dict[str, np.ndarray]:
    """Arrays [batch_size, width]: input_ids, attention_mask, token_type_ids, weights (1 real,
    0 filler) and labels when the split has them.

    Rows past len(indices) are fillers (one real token, weight 0), so every batch has the
    same number of rows and a jitted step compiles once per width. A filler has one real
    token because an all-pad row has no mean to pool.
    """
    input_ids = np.full((batch_size, width), pad_id, np.int32)
    token_type_ids = np.zeros((batch_size, width), np.int32)
    attention_mask = np.zeros((batch_size, width), np.int32)
    attention_mask[:, 0] = 1
    for row, index in enumerate(indices):
        ids = data.input_ids[index]
        input_ids[row, :len(ids)] = ids
        token_type_ids[row, :len(ids)] = data.token_type_ids[index]
        attention_mask[row, :len(ids)] = 1
    weights = np.zeros(batch_size, np.float32)
    weights[:len(indices)] = 1.0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
             "weights": weights}
    if data.labels is not None:
        labels = np.zeros(batch_size, data.labels.dtype)
        labels[:len(indices)] = data.labels[indices]
        batch["labels"] = labels
    return batch


def update_order(lengths: np.ndarray, batch_size: int, epoch: int, seed: int, bucket: bool) -> list[np.ndarray]:
    """The example indices of each batch of one epoch, a function of (seed, epoch) alone
    (which resuming relies on). With `bucket`, examples are sorted by length inside windows
    of BUCKET_WINDOW batches, then the batches are shuffled: little padding, still random."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    if bucket:
        window = batch_size * BUCKET_WINDOW
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, math.ceil(len(order) / window)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Batches in one pass over `num_examples` (the last may be partial); at least 1."""
    return max(1, math.ceil(num_examples / batch_size))
