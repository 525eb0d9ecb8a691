"""The tied-decoder cross-entropy's hand-written backward pass against autodiff of the plain
formula (`losses.plain_softmax_cross_entropy`), in float32 and bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigs.losses import plain_softmax_cross_entropy as autodiff_reference
from bigs.losses import tied_softmax_cross_entropy

N, H, V = 24, 16, 50


def case(dtype, seed=0):
    rng = np.random.RandomState(seed)
    hidden = jnp.asarray(rng.normal(size=(N, H)), dtype)
    embeddings = jnp.asarray(rng.normal(0, 0.5, size=(V, H)), dtype)
    bias = jnp.asarray(rng.normal(0, 0.5, size=(V,)), jnp.float32)
    targets = jnp.asarray(rng.randint(0, V, N), jnp.int32).at[:6].set(7)   # repeated targets
    weights = jnp.asarray(rng.rand(N), jnp.float32).at[3].set(0.0)         # per-position cotangents
    return hidden, embeddings, bias, targets, weights


def loss_and_grads(fn, hidden, embeddings, bias, targets, weights):
    def loss(hidden, embeddings, bias):
        nll, hit = fn(hidden, embeddings, bias, targets)
        return jnp.sum(nll * weights), (nll, hit)
    return jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(hidden, embeddings, bias)


def test_values_and_gradients_equal_autodiff_in_float32():
    hidden, embeddings, bias, targets, weights = case(jnp.float32)
    (got_loss, (got_nll, got_hit)), got = jax.jit(loss_and_grads, static_argnums=0)(
        tied_softmax_cross_entropy, hidden, embeddings, bias, targets, weights)
    (want_loss, (want_nll, want_hit)), want = loss_and_grads(autodiff_reference, hidden, embeddings, bias,
                                                             targets, weights)
    np.testing.assert_allclose(got_nll, want_nll, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_hit, want_hit)
    for name, g, w in zip(("hidden", "embeddings", "bias"), got, want):
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)
    # The repeated target's rows got every position's share, and a zero weight gives nothing.
    assert float(jnp.abs(got[1][7]).max()) > 0
    np.testing.assert_array_equal(got[0][3], 0)


def test_bfloat16_stays_close_to_autodiff():
    hidden, embeddings, bias, targets, weights = case(jnp.bfloat16, seed=1)
    (_, (got_nll, _)), got = loss_and_grads(tied_softmax_cross_entropy, hidden, embeddings, bias, targets, weights)
    (_, (want_nll, _)), want = loss_and_grads(autodiff_reference, hidden, embeddings, bias, targets, weights)
    assert got_nll.dtype == jnp.float32
    np.testing.assert_allclose(got_nll, want_nll, rtol=1e-5, atol=1e-5)    # float32 logits in both
    for name, g, w in zip(("hidden", "embeddings", "bias"), got, want):
        assert g.dtype == w.dtype, name
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        assert np.abs(g - w).max() <= 2 ** -6 * np.abs(w).max(), name


def test_hit_means_the_target_has_the_largest_logit():
    hidden = jnp.eye(4, dtype=jnp.float32)
    embeddings = jnp.eye(4, dtype=jnp.float32).at[3, 0].set(1.0)    # tokens 0 and 3 tie on hidden[0]
    targets = jnp.asarray([3, 1, 0, 2], jnp.int32)
    nll, hit = tied_softmax_cross_entropy(hidden, embeddings, jnp.zeros(4), targets)
    np.testing.assert_array_equal(hit, [True, True, False, False])
    assert np.all(np.isfinite(nll))


@pytest.mark.parametrize("n", [1, 5])
def test_any_number_of_positions(n):
    hidden, embeddings, bias, targets, weights = case(jnp.float32, seed=2)
    _, got = loss_and_grads(tied_softmax_cross_entropy, hidden[:n], embeddings, bias, targets[:n], weights[:n])
    _, want = loss_and_grads(autodiff_reference, hidden[:n], embeddings, bias, targets[:n], weights[:n])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
