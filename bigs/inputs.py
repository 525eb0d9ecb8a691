"""Checks of a model call's inputs, shared by the Flax and the PyTorch model (numpy only).

Both frameworks raise the same InputError, with the same message, for the same bad input.
Arrays come in as numpy arrays, which are checked by shape and by value, or as anything
else with `.shape` and `.dtype` (a jax tracer inside jit, an `ArraySpec` for a torch
tensor being traced or compiled), which is checked by shape only.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .config import BiGSConfig
from .errors import InputError


class ArraySpec(NamedTuple):
    """The shape and (numpy) dtype of an array whose values are not known here."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)


def check_inputs(config: BiGSConfig, input_ids: Any, attention_mask: Any = None, token_type_ids: Any = None,
                 position_ids: Any = None, *, multiple_choice: bool = False) -> None:
    """Raise InputError naming the problem and the value.

    input_ids [B, L] (or [B, choices, L] with multiple_choice) of integers, L in
    [1, max_position_embeddings]; attention_mask (only 0 and 1, no all-zero row),
    token_type_ids (< type_vocab_size) and position_ids (< max_position_embeddings) of the
    same shape, or None. Every id must be in [0, its table's size).
    """
    ranks = (2, 3) if multiple_choice else (2,)
    if getattr(input_ids, "ndim", None) not in ranks:
        want = "[batch, num_choices, length] or [batch, length]" if multiple_choice else "[batch, length]"
        raise InputError(f"input_ids must have shape {want}, got shape {tuple(np.shape(input_ids))}")
    if not np.issubdtype(input_ids.dtype, np.integer):
        raise InputError(f"input_ids must be integers, got dtype {input_ids.dtype}")
    length = input_ids.shape[-1]
    if length < 1:
        raise InputError("input_ids has length 0")
    if length > config.max_position_embeddings:
        raise InputError(f"sequence length {length} is longer than max_position_embeddings="
                         f"{config.max_position_embeddings}; truncate or split the input")
    named = {"attention_mask": attention_mask, "token_type_ids": token_type_ids, "position_ids": position_ids}
    for name, value in named.items():
        if value is not None and tuple(value.shape) != tuple(input_ids.shape):
            raise InputError(f"{name} has shape {tuple(value.shape)} but input_ids has shape "
                             f"{tuple(input_ids.shape)}; they must be equal")
    limits = {"input_ids": (input_ids, config.vocab_size, "vocab_size"),
              "token_type_ids": (token_type_ids, config.type_vocab_size, "type_vocab_size"),
              "position_ids": (position_ids, config.max_position_embeddings, "max_position_embeddings")}
    for name, (value, limit, what) in limits.items():
        if not isinstance(value, np.ndarray) or value.size == 0:
            continue
        low, high = int(value.min()), int(value.max())
        if low < 0 or high >= limit:
            bad = low if low < 0 else high
            where = tuple(int(i) for i in np.argwhere(value == bad)[0])
            raise InputError(f"{name} holds {bad} at index {where}, outside [0, {limit}) ({what}={limit})")
    if isinstance(attention_mask, np.ndarray):
        if not np.isin(attention_mask, (0, 1)).all():
            raise InputError("attention_mask must hold only 0 (pad) and 1 (token)")
        empty = np.argwhere(attention_mask.reshape(-1, length).sum(-1) == 0)
        if empty.size:
            raise InputError(f"attention_mask row {int(empty[0, 0])} is all zeros: every sequence needs at "
                             "least one real token (the original returns NaN here)")
