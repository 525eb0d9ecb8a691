"""Sequence-classifier predictions over encoded examples: what `bigs predict` prints and what
fine-tuning evaluates and writes for the test split.

    logits = predict_logits(model, encode(tokenizer, examples, 128), batching=Batching("longest", 128))
    labels = to_predictions(logits, is_regression=False)
"""

from __future__ import annotations

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np

from .data.batching import Batching, Encoded, make_batch
from .errors import NonFiniteError


@lru_cache(maxsize=16)  # one compiled function per (module, pad mode); modules of equal configs are equal
def _logits_fn(module, pad_mode: str | None):
    def logits(params, batch):
        input_ids = batch["input_ids"]
        positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
        out = module.apply({"params": params}, input_ids, batch["attention_mask"], batch["token_type_ids"],
                           positions, deterministic=True, pad_mode=pad_mode)
        return out.logits.astype(jnp.float32)
    return jax.jit(logits)


def predict_logits(model, data: Encoded, *, batching: Batching, batch_size: int = 32, pad_id: int = 0,
                   params=None, pad_mode: str | None = None) -> np.ndarray:
    """[n, num_labels] float32 logits of a FlaxBiGSForSequenceClassification, in data's order.

    `params` defaults to model.params; `pad_mode` ("reference" or "exact") to the model
    config's. With "longest" batching the examples are sorted by length first, so each batch
    is as narrow as it can be. Raises NonFiniteError naming the first example whose logits
    are NaN or infinite: such a row is never returned as a prediction.
    """
    params = model.params if params is None else params
    step = _logits_fn(model.module, pad_mode)
    order = np.argsort(data.lengths, kind="stable") if batching.bucket else np.arange(len(data))
    num_labels = model.config.num_labels
    out = np.zeros((len(data), num_labels), np.float32)
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        batch = make_batch(data, indices, batch_size, batching.width(int(data.lengths[indices].max())), pad_id)
        batch.pop("labels", None)
        batch.pop("weights")
        out[indices] = np.asarray(step(params, batch))[:len(indices)]
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise NonFiniteError(f"the model gives non-finite logits {out[bad[0]].tolist()} for example {int(bad[0])} "
                             f"({bad.size} of {len(data)} examples)")
    return out


def to_predictions(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    """[n] predicted label ids (argmax), or [n] float scores for a regression head."""
    return logits[:, 0] if is_regression else logits.argmax(-1)
