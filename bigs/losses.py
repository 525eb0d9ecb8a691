"""The MLM loss: softmax cross-entropy through the decoder tied to the word embeddings.

`masked_lm_loss` gathers the labelled positions first, so the vocabulary projection runs on
at most max_predictions positions per sequence. `tied_softmax_cross_entropy` is that
projection and its loss with a hand-written backward pass. Plain autodiff of
`log_softmax(h @ E.T + b)[target]` makes several passes over [N, V] arrays: it scatters the
target's gradient into a zero [N, V] array, reduces [N, V] for the bias gradient and copies
[N, V] into the transposed layout for the embedding gradient. Here the softmax part is one
[N, V] pass and the target part works on [N, H] rows (docs/performance.md, "MLM loss").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .outputs import MaskedLMLoss

Array = jax.Array
IGNORE_INDEX = -100


def _logits_and_stats(hidden, embeddings, bias, targets):
    logits = jnp.dot(hidden, embeddings.T, preferred_element_type=jnp.float32) + bias
    top = jnp.max(logits, axis=-1)
    log_z = top + jnp.log(jnp.sum(jnp.exp(logits - top[:, None]), axis=-1))
    target_logit = jnp.take_along_axis(logits, targets[:, None], axis=-1)[:, 0]
    return logits, log_z, target_logit, top


@jax.custom_vjp
def tied_softmax_cross_entropy(hidden: Array, embeddings: Array, bias: Array, targets: Array):
    """-log softmax(hidden @ embeddings.T + bias)[targets], and whether each target's logit is
    the largest (a tie with another token counts as right).

    hidden [N, H] and embeddings [V, H] in the compute dtype; bias [V] float32; targets [N]
    int in [0, V). Logits, softmax and loss are float32. Returns (nll [N] float32, hit [N]
    bool). Gradients flow to hidden, embeddings and bias.
    """
    _, log_z, target_logit, top = _logits_and_stats(hidden, embeddings, bias, targets)
    return log_z - target_logit, target_logit >= top


def _forward(hidden, embeddings, bias, targets):
    logits, log_z, target_logit, top = _logits_and_stats(hidden, embeddings, bias, targets)
    return (log_z - target_logit, target_logit >= top), (hidden, embeddings, targets, logits, log_z)


def _backward(residuals, cotangents):
    hidden, embeddings, targets, logits, log_z = residuals
    g = cotangents[0].astype(jnp.float32)                       # d loss / d nll, [N]
    # d nll_n / d logits_n = softmax_n - onehot(target_n). The softmax part is dense:
    probs32 = jnp.exp(logits - log_z[:, None]) * g[:, None]    # [N, V]
    probs = probs32.astype(hidden.dtype)
    # the one-hot part only touches the target rows of E and b.
    target_rows = embeddings[targets].astype(jnp.float32)      # [N, H]
    g_hidden = jnp.dot(probs, embeddings, preferred_element_type=jnp.float32) - g[:, None] * target_rows
    # hidden.T @ probs reads probs in its own layout ([N, V] row-major) and gives [H, V];
    # transposing that [H, V] is cheap next to transposing probs.
    g_embeddings = jnp.dot(hidden.T, probs, preferred_element_type=jnp.float32).T
    g_embeddings = g_embeddings.at[targets].add(-g[:, None] * hidden.astype(jnp.float32))
    # The bias gradient as a [N] @ [N, V] product: a matmul, not a column reduction.
    g_bias = jnp.dot(jnp.ones(probs32.shape[:1], jnp.float32), probs32)
    g_bias = g_bias.at[targets].add(-g)
    return g_hidden.astype(hidden.dtype), g_embeddings.astype(embeddings.dtype), g_bias, None


tied_softmax_cross_entropy.defvjp(_forward, _backward)


def plain_softmax_cross_entropy(hidden: Array, embeddings: Array, bias: Array, targets: Array):
    """`tied_softmax_cross_entropy` written plainly and differentiated by jax: the same values,
    hit meaning argmax == target. The reference for tests and benchmarks."""
    logits = jnp.dot(hidden, embeddings.T, preferred_element_type=jnp.float32) + bias
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), targets[:, None], axis=-1)[:, 0]
    return nll, jnp.argmax(logits, axis=-1) == targets


def masked_lm_loss(head_fn, hidden: Array, labels: Array, max_predictions: int) -> MaskedLMLoss:
    """Mean cross-entropy over the positions with labels != -100 (at most max_predictions per
    row).

    hidden [B, L, H], labels [B, L]. head_fn(picked [B, P, H], targets [B, P]) -> (nll, hit),
    each [B, P]: the MLM head with `tied_softmax_cross_entropy`. The labelled positions are
    gathered first, so the vocabulary projection (the model's largest matmul) runs on
    [B, P, H], not [B, L, H]. `correct` counts positions whose label has the largest logit.
    """
    labelled = labels != IGNORE_INDEX
    # Indices of labelled positions first (stable), padded with unlabelled ones.
    order = jnp.argsort(~labelled, axis=1, stable=True)[:, :max_predictions]
    picked_labels = jnp.take_along_axis(labels, order, axis=1)
    valid = picked_labels != IGNORE_INDEX
    picked = jnp.take_along_axis(hidden, order[:, :, None], axis=1)
    nll, hit = head_fn(picked, jnp.where(valid, picked_labels, 0))
    count = jnp.sum(valid)
    loss = jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(count, 1)
    correct = jnp.sum(valid & hit)
    return MaskedLMLoss(loss=loss, correct=correct, count=count)


# ----------------------------------------------------------------- the heads' losses
# The labels each head's __call__ takes (keyed by architecture name), as transformers' BERT.
HEAD_LABELS = {
    "BiGSModel": (),
    "BiGSForMaskedLM": ("labels",),
    "BiGSForPreTraining": ("labels", "next_sentence_label"),
    "BiGSForNextSentencePrediction": ("labels",),
    "BiGSForSequenceClassification": ("labels",),
    "BiGSForTokenClassification": ("labels",),
    "BiGSForQuestionAnswering": ("start_positions", "end_positions"),
    "BiGSForMultipleChoice": ("labels",),
}


def _cross_entropy(logits, labels, ignore_index: int | None = IGNORE_INDEX):
    """Mean softmax cross-entropy of logits [N, C] float32 against labels [N] int, over the
    labels that are not ignore_index (torch.nn.functional.cross_entropy's mean)."""
    labels = jnp.asarray(labels).reshape(-1).astype(jnp.int32)
    logits = jnp.asarray(logits, jnp.float32).reshape(labels.shape[0], -1)
    keep = labels != ignore_index if ignore_index is not None else jnp.ones_like(labels, bool)
    safe = jnp.where(keep, labels, 0)
    nll = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, safe[:, None], axis=-1)[:, 0]
    return jnp.sum(jnp.where(keep, nll, 0.0)) / jnp.sum(keep)


def head_loss(architecture: str, config, out, labels=None, next_sentence_label=None, start_positions=None,
              end_positions=None):
    """The loss transformers' BERT head of `architecture` gives for `out` (a head output):
    MLM and token classification: cross-entropy over labels != -100; pretraining: MLM + NSP;
    NSP and multiple choice: cross-entropy; sequence classification: MSE when num_labels is
    1 (or problem_type "regression"), cross-entropy for integer labels, binary cross-entropy
    with logits for float labels (multi-label); QA: the mean of the start and end
    cross-entropies, positions outside the sequence clamped to L and ignored. float32 []."""
    if architecture in ("BiGSForMaskedLM", "BiGSForTokenClassification"):
        return _cross_entropy(out.logits, labels)
    if architecture == "BiGSForPreTraining":
        return (_cross_entropy(out.prediction_logits, labels)
                + _cross_entropy(out.seq_relationship_logits, next_sentence_label, None))
    if architecture in ("BiGSForNextSentencePrediction", "BiGSForMultipleChoice"):
        return _cross_entropy(out.logits, labels, None)
    if architecture == "BiGSForQuestionAnswering":
        length = out.start_logits.shape[-1]
        start = jnp.clip(jnp.asarray(start_positions).reshape(-1), 0, length)
        end = jnp.clip(jnp.asarray(end_positions).reshape(-1), 0, length)
        return (_cross_entropy(out.start_logits, start, length) + _cross_entropy(out.end_logits, end, length)) / 2
    if architecture == "BiGSForSequenceClassification":
        labels = jnp.asarray(labels)
        logits = jnp.asarray(out.logits, jnp.float32)
        problem = config.problem_type or ("regression" if config.num_labels == 1 else
                                          "single_label_classification" if jnp.issubdtype(labels.dtype, jnp.integer)
                                          else "multi_label_classification")
        if problem == "regression":
            return jnp.mean((jnp.squeeze(logits) - jnp.squeeze(labels).astype(jnp.float32)) ** 2)
        if problem == "single_label_classification":
            return _cross_entropy(logits, labels, None)
        targets = labels.astype(jnp.float32)
        return jnp.mean(jnp.maximum(logits, 0) - logits * targets + jnp.log1p(jnp.exp(-jnp.abs(logits))))
    raise ValueError(f"{architecture} has no loss")
