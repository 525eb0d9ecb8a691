"""The two BiGS layers (bigs/layers.py, paper order; bigs/fast_layer.py, fused) compute the
same function of the same params: outputs and gradients agree across sizes, norms, lengths,
dtypes, pad modes, convolution backends and token blocks, and the switch between them
(config.layer_impl, resolved by backends.resolve) picks the layer that runs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from bigs import BiGSConfig, FlaxBiGSModel, LayerImpl, backends, initializers
from bigs.fast_layer import FastBiGSLayer
from bigs.layers import BiGSLayer
from bigs.modeling import _declared_shapes

SIZES = {"small": dict(hidden_size=16, intermediate_size=32, num_ssm=4),
         "wide": dict(hidden_size=24, intermediate_size=40, num_ssm=8)}
MAX_LENGTH = 64
# float32: the layers round in different places (flips, a fused matmul, two LayerNorm
# formulas), a few float32 ulps apart; a GELU of the wrong kind (1e-4 in the outputs) fails.
# bfloat16 (8 significant bits) rounds at different points too: a gradient leaf summed with
# cancellation (log_step) differs by a few percent, the gradients as a whole by under 1%.
# (outputs and each gradient leaf: max abs / max(1, largest); all gradients: relative RMS)
TOLERANCE = {"float32": (2e-5, 1e-5), "bfloat16": (2 ** -3, 2 ** -6)}

# (size, pre_norm, length, dtype, pad_mode, conv_backend, token_block): every value of each
# axis appears, with lengths that token blocks divide (64 by 16) and do not (33 by 5, 7 by
# 4); in float32 every backend in both pad modes.
CASES = [
    ("small", True, 33, "float32", "reference", "fft", None),
    ("small", True, 33, "float32", "exact", "toeplitz", 5),
    ("wide", False, 64, "float32", "exact", "scan", 0),
    ("small", False, 7, "float32", "reference", "toeplitz", 4),
    ("wide", True, 64, "float32", "reference", "scan", 16),
    ("wide", True, 7, "float32", "exact", "fft", 0),
    ("wide", True, 64, "bfloat16", "reference", "toeplitz", None),
    ("small", False, 33, "bfloat16", "exact", "scan", 5),
]


def perturbed(params, seed=0):
    """Encoder kernels at std 1/sqrt(fan_in) (as in the goldens), so that each layer changes
    the hidden state by O(1) rather than O(1e-6); noise on the constant leaves."""
    rng = np.random.RandomState(seed)

    def fix(path, leaf):
        names = [getattr(k, "key", "") for k in path]
        if "encoder" in names and names[-1] == "kernel":
            return leaf / np.sqrt(leaf.shape[-2]) / 0.02
        if names[-1] in ("bias", "scale", "D", "A_re"):
            return leaf + np.float32(0.1) * rng.standard_normal(leaf.shape).astype(np.float32)
        return leaf
    return jax.tree_util.tree_map_with_path(fix, params)


def batch(length, vocab=50, seed=0):
    """Three rows: full, half and three real tokens; random ids at the pads too."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, vocab, (3, length)).astype(np.int32)
    mask = np.zeros_like(ids)
    for row, n in enumerate((length, length // 2 + 1, min(3, length))):
        mask[row, :n] = 1
    return ids, mask


def layer_params(config, plan, hidden, mask):
    """One layer's params, drawn from the declared distributions, then perturbed."""
    declared = jax.eval_shape(BiGSLayer(config, plan).init, jax.random.PRNGKey(0), hidden, mask)["params"]
    return perturbed({"encoder": initializers.draw_on_host(declared, jax.random.PRNGKey(0))})["encoder"]


def outputs_and_gradients(apply, params, hidden, weights):
    """apply(params, hidden) -> [B, L, H]; its value and the gradients of a scalar of it
    with respect to the params and the input."""
    def loss(params, hidden):
        out = apply(params, hidden).astype(jnp.float32)
        return jnp.sum(jnp.sin(out) * weights), out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, hidden)
    return out, grads


def assert_agree(reference, fast, dtype):
    largest, overall = TOLERANCE[dtype]
    assert float(jnp.max(jnp.abs(reference[0]))) > 1.0          # the layers change the hidden state
    for want, got in zip([reference[0], *jax.tree.leaves(reference[1])], [fast[0], *jax.tree.leaves(fast[1])]):
        want, got = np.asarray(want, np.float32), np.asarray(got, np.float32)
        assert np.max(np.abs(got - want)) <= largest * max(1.0, np.max(np.abs(want)))
    squares = [(np.sum((np.asarray(got, np.float32) - np.asarray(want, np.float32)) ** 2),
                np.sum(np.asarray(want, np.float32) ** 2))
               for want, got in zip(jax.tree.leaves(reference[1]), jax.tree.leaves(fast[1]))]
    assert np.sqrt(sum(d for d, _ in squares) / sum(w for _, w in squares)) <= overall


@pytest.mark.parametrize("size, pre_norm, length, dtype, pad_mode, backend, token_block", CASES,
                         ids=["-".join(map(str, case)) for case in CASES])
def test_reference_and_fast_layers_agree(size, pre_norm, length, dtype, pad_mode, backend, token_block):
    config = BiGSConfig(pre_norm=pre_norm, token_block=token_block, **SIZES[size])
    plan = backends.resolve(config, length, deterministic=True, pad_mode=pad_mode, conv_backend=backend)
    rng = np.random.RandomState(length)
    hidden = jnp.asarray(rng.standard_normal((3, length, config.hidden_size)), dtype)
    weights = jnp.asarray(rng.standard_normal(hidden.shape), jnp.float32)
    mask = jnp.asarray(batch(length)[1])
    params = layer_params(config, plan, hidden, mask)
    results = [outputs_and_gradients(lambda p, h: layer(config, plan, jnp.dtype(dtype)).apply({"params": p}, h, mask),
                                     params, hidden, weights)
               for layer in (BiGSLayer, FastBiGSLayer)]
    assert_agree(*results, dtype)


def test_reference_and_fast_models_agree_under_scan_and_remat():
    """Two layers in the encoder, under nn.scan and nn.remat (the training policy): the
    same outputs and gradients for every param."""
    config = BiGSConfig(vocab_size=50, num_hidden_layers=2, max_position_embeddings=MAX_LENGTH, **SIZES["small"])
    model = FlaxBiGSModel(config, seed=0)
    params = perturbed(model.params)
    ids, mask = batch(40)
    inputs = model.prepare_inputs(ids, mask)
    weights = jnp.asarray(np.random.RandomState(1).standard_normal((*ids.shape, config.hidden_size)), jnp.float32)
    results = []
    for impl in ("reference", "fast"):
        def apply(params, _, impl=impl):
            return model.module.apply({"params": params}, *inputs, deterministic=False, pad_mode="exact",
                                      layer_impl=impl, rngs={"dropout": jax.random.PRNGKey(0)}).last_hidden_state
        results.append(outputs_and_gradients(apply, params, jnp.zeros(()), weights))
    assert_agree(*results, "float32")


def test_layer_impl_picks_the_layer_that_runs():
    config = BiGSConfig(vocab_size=50, num_hidden_layers=2, max_position_embeddings=MAX_LENGTH, **SIZES["small"])
    model = FlaxBiGSModel(config, seed=0)
    ran = []

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and isinstance(context.module, (BiGSLayer, FastBiGSLayer)):
            ran.append(BiGSLayer if isinstance(context.module, BiGSLayer) else FastBiGSLayer)
        return next_fun(*args, **kwargs)

    inputs = model.prepare_inputs(*batch(8))
    for impl, layer in (("reference", BiGSLayer), ("fast", FastBiGSLayer)):
        ran.clear()
        with nn.intercept_methods(record):
            model.module.apply({"params": model.params}, *inputs, layer_impl=impl)
        assert ran and set(ran) == {layer}, impl
    assert backends.resolve(config, 8, deterministic=True).layer_impl is LayerImpl.FAST       # "auto"


def test_both_layers_declare_the_same_params():
    trees = []
    for impl in ("reference", "fast"):
        model = FlaxBiGSModel(BiGSConfig(vocab_size=50, num_hidden_layers=2, max_position_embeddings=MAX_LENGTH,
                                         layer_impl=impl, **SIZES["wide"]), _do_init=False)
        trees.append({path: (leaf.value.shape, leaf.distribution)
                      for path, leaf in traverse_util.flatten_dict(_declared_shapes(model.module)).items()})
    assert trees[0] == trees[1]
