"""The fast initialisers (numpy on the host for a concrete key, one compiled draw under a
trace) against Flax's module.init: the same tree, shapes, constants and distributions, for
every model class."""

import jax
import numpy as np
import pytest
from flax import traverse_util

import bigs
from bigs import initializers
from bigs.modeling import _init_params_traced

CONFIG = dict(vocab_size=400, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_ssm=16,
              max_position_embeddings=64, num_labels=2, initializer_range=0.05)


def _traced_init(model, seed):
    return jax.jit(lambda key: model.init_weights(key))(jax.random.PRNGKey(seed))


@pytest.mark.parametrize("name", sorted(bigs.MODEL_CLASSES))
@pytest.mark.parametrize("draw", ["host", "traced, pooled", "traced, large leaves alone"])
def test_fast_init_matches_flax_init(name, draw, monkeypatch):
    monkeypatch.setattr(initializers, "OWN_DRAW_MIN_SIZE", 1000 if draw.endswith("alone") else 1 << 20)
    monkeypatch.setattr(initializers, "HOST_CHUNK", 5000)   # several chunks in the large leaves
    cfg = bigs.BiGSConfig(**CONFIG, scaling="lin")
    model = bigs.MODEL_CLASSES[name](cfg, seed=0)
    params = model.params if draw == "host" else _traced_init(model, 0)
    fast = traverse_util.flatten_dict(jax.device_get(params))
    flax_init = traverse_util.flatten_dict(jax.device_get(
        jax.jit(_init_params_traced, static_argnums=0)(model.module, jax.random.PRNGKey(1))))
    assert list(fast) == list(flax_init)
    for path, value in fast.items():
        reference = flax_init[path]
        assert value.shape == reference.shape and value.dtype == reference.dtype, path
        kind, *args = initializers.spec(path[-1], cfg)
        if kind in ("constant", "A"):
            np.testing.assert_array_equal(value, reference, err_msg=str(path))
        elif kind == "normal":
            assert abs(value.std() - args[0]) < 0.1 * args[0] + 4 * args[0] / np.sqrt(value.size), path
            assert abs(value.mean()) < 5 * args[0] / np.sqrt(value.size), path
        else:
            assert args[0] <= value.min() and value.max() <= args[1], path
        if kind in ("normal", "uniform") and value.size > 1:
            assert len(np.unique(value)) > value.size // 2, path        # not one value repeated


@pytest.mark.parametrize("draw", ["host", "traced"])
def test_fast_init_draws_each_leaf_independently_and_by_seed(draw, monkeypatch):
    monkeypatch.setattr(initializers, "HOST_CHUNK", 5000)
    cfg = bigs.BiGSConfig(**CONFIG)
    model = bigs.FlaxBiGSModel(cfg, _do_init=False)

    def init(seed):
        key = jax.random.PRNGKey(seed)
        params = model.init_weights(key) if draw == "host" else _traced_init(model, seed)
        return traverse_util.flatten_dict(jax.device_get(params), sep="/")

    params, again, other = init(0), init(0), init(1)
    layers = params["encoder/layer/du_forward/kernel"]
    assert not np.allclose(layers[0], layers[1])                      # the layers differ
    assert not np.allclose(params["encoder/layer/du_forward/kernel"], params["encoder/layer/du_backward/kernel"])
    embedding = params["embeddings/word_embeddings/embedding"].reshape(-1)
    assert not np.allclose(embedding[:5000], embedding[5000:10000])   # so do a leaf's chunks
    for key, value in params.items():
        np.testing.assert_array_equal(value, again[key])
    assert not np.allclose(params["embeddings/word_embeddings/embedding"],
                           other["embeddings/word_embeddings/embedding"])


def test_host_draw_does_not_depend_on_the_number_of_threads(monkeypatch):
    monkeypatch.setattr(initializers, "HOST_CHUNK", 3000)
    model = bigs.FlaxBiGSForMaskedLM(bigs.BiGSConfig(**CONFIG), _do_init=False)
    layout = tuple((path, tuple(leaf.shape), initializers.spec(path[-1], model.config))
                   for path, leaf in traverse_util.flatten_dict(model.init_shapes()).items())
    key = jax.random.PRNGKey(3)
    one = list(initializers._host_draw(layout, key, threads=1))
    three = list(initializers._host_draw(layout, key, threads=3))
    typed = list(initializers._host_draw(layout, jax.random.wrap_key_data(key)))   # a new-style typed key
    assert len(one) == len(three) == len(typed) == len(layout)
    for leaf_one, leaf_three, leaf_typed, (_, shape, _) in zip(one, three, typed, layout):
        assert leaf_one.shape == shape
        np.testing.assert_array_equal(leaf_one, leaf_three)
        np.testing.assert_array_equal(leaf_one, leaf_typed)


def test_unknown_parameter_name_is_named():
    with pytest.raises(KeyError, match="gamma"):
        initializers.spec("gamma", bigs.BiGSConfig(**CONFIG))


def test_built_params_are_owned_by_jax_so_a_donating_step_reuses_their_memory():
    # device_put of an aligned numpy array only wraps it on CPU, and such a buffer cannot be
    # donated: a training step would then hold the params twice.
    embedding = bigs.FlaxBiGSModel(bigs.BiGSConfig(**CONFIG)).params["embeddings"]["word_embeddings"]["embedding"]
    pointer = embedding.unsafe_buffer_pointer()
    doubled = jax.jit(lambda x: x * 2, donate_argnums=0)(embedding)
    assert doubled.unsafe_buffer_pointer() == pointer
