"""Masked-LM masking: BERT's 80/10/10 corruption, and the two ways its targets are written.

The targets of a masking are either labels [n, L] (the original id where a token was chosen,
IGNORE_INDEX elsewhere; what the loss reads) or, as shards store them (bigs.data.shards),
masked_lm_positions and masked_lm_ids [n, max_predictions] (ascending positions, then
0-padded: position 0 is [CLS], never masked, so 0 means "none").
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tokenizers import Tokenizer

from ..errors import ConfigError, DataError
from ..tokenizer import SPECIAL_TOKENS

IGNORE_INDEX = -100  # label of unmasked positions, as the MLM loss expects


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
    def from_tokenizer(cls, tokenizer: Tokenizer) -> SpecialTokens:
        """Reads the ids of [PAD] [UNK] [CLS] [SEP] [MASK]; raises DataError if one is missing."""
        ids = [tokenizer.token_to_id(name) for name in SPECIAL_TOKENS]
        missing = [name for name, index in zip(SPECIAL_TOKENS, ids) if index is None]
        if missing:
            raise DataError(
                f"tokenizer vocabulary lacks {missing}; expected a BERT WordPiece vocabulary "
                f"containing all of {list(SPECIAL_TOKENS)}"
            )
        return cls(tokenizer.get_vocab_size(with_added_tokens=True), *ids)

    def never_masked(self, input_ids: np.ndarray) -> np.ndarray:
        """[n, L] bool: True at [CLS], [SEP] and [PAD]."""
        return np.isin(input_ids, (self.cls_id, self.sep_id, self.pad_id))


# bert-base/large-uncased, the vocabulary of the published checkpoints.
BERT_UNCASED = SpecialTokens(vocab_size=30522, pad_id=0, unk_id=100, cls_id=101, sep_id=102, mask_id=103)


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
    Returns (masked_ids [n, L], labels [n, L] = original id where chosen, else -100), int32.

    Source: BERT's create_pretraining_data.py (google-research/bert), which counts every
    token, [CLS] and [SEP] included, when it sizes the choice; this counts the candidates.
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
    """`examples` with input_ids and masked_lm_* set from a fresh masking of original_ids [n, L].

    Padding (input_mask 0), [CLS], [SEP] and [PAD] are never chosen. Returns the shard fields:
    input_ids [n, L] and masked_lm_positions/ids [n, max_predictions], int32.
    """
    never = special.never_masked(original_ids) | (examples["input_mask"] == 0)
    masked, labels = dynamic_mask(
        original_ids, never, rng, vocab_size=special.vocab_size, mask_id=special.mask_id,
        mask_prob=mask_prob, max_predictions=max_predictions,
    )
    positions, ids = positions_from_labels(labels, max_predictions)
    return {**examples, "input_ids": masked, "masked_lm_positions": positions, "masked_lm_ids": ids}


def labels_from_positions(batch: dict[str, np.ndarray]) -> np.ndarray:
    """MLM labels [n, L] int32: the original id at masked positions, IGNORE_INDEX (-100) elsewhere."""
    labels = np.full(batch["input_ids"].shape, IGNORE_INDEX, dtype=np.int32)
    rows, slots = np.nonzero(batch["masked_lm_positions"] > 0)
    labels[rows, batch["masked_lm_positions"][rows, slots]] = batch["masked_lm_ids"][rows, slots]
    return labels


def positions_from_labels(labels: np.ndarray, max_predictions: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `labels_from_positions`: labels [n, L] -> positions, ids [n, max_predictions] int32.

    Raises ConfigError when a row has more than max_predictions labels.
    """
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
