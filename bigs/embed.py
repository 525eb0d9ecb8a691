"""Sentence embeddings with the Flax model: the mean of the last hidden states over each
text's real tokens, with exact padding, so a text's vector does not depend on the batch it
was run in. What `bigs embed` runs; the PyTorch paths (SentenceTransformer, the
feature-extraction pipeline) give the same vectors (docs/torch.md).

    vectors = embed_texts(FlaxBiGSModel.from_pretrained(folder), BiGSTokenizer.from_pretrained(folder), texts)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from .config import PadMode
from .data.batching import Batching, Encoded, encode, make_batch
from .data.glue import Examples
from .errors import ConfigError, NonFiniteError


@lru_cache(maxsize=8)
def _mean_pool_fn(module, pad_mode: str):
    def pooled(params, batch):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        positions = jnp.broadcast_to(jnp.arange(ids.shape[1]), ids.shape)
        hidden = module.apply({"params": params}, ids, mask, batch["token_type_ids"], positions,
                              deterministic=True, pad_mode=pad_mode).last_hidden_state.astype(jnp.float32)
        weights = mask.astype(jnp.float32)[:, :, None]
        return jnp.sum(hidden * weights, axis=1) / jnp.sum(weights, axis=1)
    return jax.jit(pooled)


def embed_texts(model, tokenizer, texts: Sequence[str], *, max_length: int | None = None, batch_size: int = 32,
                pad_mode: str = PadMode.EXACT.value, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """[len(texts), hidden_size] float32: each text's mean last hidden state over its real
    tokens ([CLS] text [SEP], truncated to `max_length`, default the model's
    max_position_embeddings). `model` is a FlaxBiGSModel. Texts are run in batches of
    similar length; `progress(n)` is called with the number of texts each batch finished.
    pad_mode "exact" (the default) makes a vector independent of its batch; "reference"
    gives the original's behaviour. Raises ConfigError for bad sizes, NonFiniteError naming
    the first text whose vector is not finite.
    """
    limit = model.config.max_position_embeddings
    max_length = limit if max_length is None else max_length
    if not 2 <= max_length <= limit:
        raise ConfigError(f"max_length={max_length}; expected 2 to the model's max_position_embeddings={limit}")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size}; expected a positive integer")
    data: Encoded = encode(tokenizer, Examples(list(texts), None, None), max_length)
    batching = Batching("longest", max_length, pad_to_multiple_of=16)
    step = _mean_pool_fn(model.module, PadMode(pad_mode).value)
    out = np.zeros((len(data), model.config.hidden_size), np.float32)
    order = np.argsort(data.lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = make_batch(data, indices, batch_size, batching.width(int(data.lengths[indices].max())),
                           tokenizer.pad_token_id)
        batch.pop("weights")
        batch.pop("labels", None)
        out[indices] = np.asarray(step(model.params, batch))[:len(indices)]
        if progress is not None:
            progress(len(indices))
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise NonFiniteError(f"the model gives a non-finite embedding for text {int(bad[0])} "
                             f"({bad.size} of {len(out)} texts)")
    return out
