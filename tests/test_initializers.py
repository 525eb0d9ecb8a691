"""The fast initialiser (one draw cut into leaves) against Flax's module.init: the same tree,
shapes, constants and distributions, for every model class."""

import jax
import numpy as np
import pytest
from flax import traverse_util

import bigs
from bigs import initializers
from bigs.modeling import _init_params_traced

CONFIG = dict(vocab_size=400, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_ssm=16,
              max_position_embeddings=64, num_labels=2, initializer_range=0.05)


@pytest.mark.parametrize("name", sorted(bigs.MODEL_CLASSES))
@pytest.mark.parametrize("own_draw_min_size", [1 << 20, 1000])   # all leaves pooled / large ones drawn alone
def test_fast_init_matches_flax_init(name, own_draw_min_size, monkeypatch):
    monkeypatch.setattr(initializers, "OWN_DRAW_MIN_SIZE", own_draw_min_size)
    cfg = bigs.BiGSConfig(**CONFIG, scaling="lin")
    model = bigs.MODEL_CLASSES[name](cfg, seed=0)
    fast = traverse_util.flatten_dict(jax.device_get(model.params))
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


def test_fast_init_draws_each_leaf_independently_and_by_seed():
    cfg = bigs.BiGSConfig(**CONFIG)
    params = traverse_util.flatten_dict(bigs.FlaxBiGSModel(cfg, seed=0).params, sep="/")
    layers = params["encoder/layer/du_forward/kernel"]
    assert not np.allclose(layers[0], layers[1])                      # the layers differ
    assert not np.allclose(params["encoder/layer/du_forward/kernel"], params["encoder/layer/du_backward/kernel"])
    again = traverse_util.flatten_dict(bigs.FlaxBiGSModel(cfg, seed=0).params, sep="/")
    other = traverse_util.flatten_dict(bigs.FlaxBiGSModel(cfg, seed=1).params, sep="/")
    for key, value in params.items():
        np.testing.assert_array_equal(value, again[key])
    assert not np.allclose(params["embeddings/word_embeddings/embedding"],
                           other["embeddings/word_embeddings/embedding"])


def test_unknown_parameter_name_is_named():
    with pytest.raises(KeyError, match="gamma"):
        initializers.spec("gamma", bigs.BiGSConfig(**CONFIG))
