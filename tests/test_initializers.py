"""The initialisers the modules declare (bigs/initializers.py): the host draw for a concrete
key and module.init under a trace against the declared distributions, for every model
class; the Declared boxes never reach params, checkpoints or module.apply."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import bigs
from bigs import initializers
from bigs.modeling import _declared_shapes

CONFIG = dict(vocab_size=400, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_ssm=16,
              max_position_embeddings=64, num_labels=2, initializer_range=0.05)


def _traced_init(model, seed):
    return jax.jit(lambda key: model.init_weights(key))(jax.random.PRNGKey(seed))


def _declared(model) -> dict:
    """path -> Distribution, as the modules declared them."""
    declared = traverse_util.flatten_dict(_declared_shapes(model.module))
    return {path: leaf.distribution for path, leaf in declared.items()}


@pytest.mark.parametrize("name", sorted(bigs.MODEL_CLASSES))
@pytest.mark.parametrize("draw", ["host", "traced"])
def test_init_draws_the_declared_distributions(name, draw, monkeypatch):
    monkeypatch.setattr(initializers, "HOST_CHUNK", 5000)   # several chunks in the large leaves
    cfg = bigs.BiGSConfig(**CONFIG, scaling="lin")
    model = bigs.MODEL_CLASSES[name](cfg, seed=0)
    traced = jax.jit(model.init_weights)                        # module.init, compiled once
    params = model.params if draw == "host" else traced(jax.random.PRNGKey(0))
    fast = traverse_util.flatten_dict(jax.device_get(params))
    flax_init = traverse_util.flatten_dict(jax.device_get(traced(jax.random.PRNGKey(1))))
    declared = _declared(model)
    assert list(fast) == list(flax_init) == list(declared)
    for path, value in fast.items():
        reference, distribution = flax_init[path], declared[path]
        assert value.shape == reference.shape and value.dtype == reference.dtype, path
        if distribution.standard == "zero":
            np.testing.assert_array_equal(value, reference, err_msg=str(path))
            np.testing.assert_array_equal(value, np.broadcast_to(np.float32(distribution.shift), value.shape))
        elif distribution.standard == "normal":
            std = distribution.scale
            assert abs(value.std() - std) < 0.1 * std + 4 * std / np.sqrt(value.size), path
            assert abs(value.mean()) < 5 * std / np.sqrt(value.size), path
        else:
            low, high = distribution.shift, distribution.shift + distribution.scale
            assert low <= value.min() and value.max() <= high, path
        if distribution.standard != "zero" and value.size > 1:
            assert len(np.unique(value)) > value.size // 2, path        # not one value repeated


def test_modules_declare_the_original_distributions():
    model = bigs.FlaxBiGSForMaskedLM(bigs.BiGSConfig(**CONFIG), _do_init=False)
    declared = {"/".join(path): d for path, d in _declared(model).items()}
    a_re, a_im = bigs.ssm.init_A("hippo", CONFIG["num_ssm"])
    expected = {
        "s4_bert/embeddings/word_embeddings/embedding": initializers.normal(0.05),
        "s4_bert/embeddings/LayerNorm/scale": initializers.ones,
        "s4_bert/encoder/layer/dv/kernel": initializers.normal(0.05),
        "s4_bert/encoder/layer/dv/bias": initializers.zeros,
        "s4_bert/encoder/layer/fs4/C": initializers.normal(0.5 ** 0.5),
        "s4_bert/encoder/layer/bs4/log_step": initializers.uniform(np.log(0.01), 0.0),
        "s4_bert/encoder/layer/bs4/D": initializers.ones,
        "s4_bert/encoder/layer/fs4/A_re": initializers.constant(a_re),
        "s4_bert/encoder/layer/fs4/A_im": initializers.constant(a_im),
        "cls/predictions/bias": initializers.zeros,
    }
    for path, distribution in expected.items():
        assert declared[path] == distribution, path


@pytest.mark.parametrize("draw", ["host", "traced"])
def test_init_draws_each_leaf_independently_and_by_seed(draw, monkeypatch):
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
    layout = tuple((path, tuple(leaf.value.shape), leaf.distribution)
                   for path, leaf in traverse_util.flatten_dict(_declared_shapes(model.module)).items())
    key = jax.random.PRNGKey(3)
    one = list(initializers._host_draw(layout, key, threads=1))
    three = list(initializers._host_draw(layout, key, threads=3))
    typed = list(initializers._host_draw(layout, jax.random.wrap_key_data(key)))   # a new-style typed key
    assert len(one) == len(three) == len(typed) == len(layout)
    for leaf_one, leaf_three, leaf_typed, (_, shape, _) in zip(one, three, typed, layout):
        assert leaf_one.shape == shape
        np.testing.assert_array_equal(leaf_one, leaf_three)
        np.testing.assert_array_equal(leaf_one, leaf_typed)


def test_host_draw_does_not_depend_on_the_layer_implementation():
    """The draw is seeded by each param's path, so the order in which the two layers create
    their params does not matter."""
    fast, reference = (bigs.FlaxBiGSModel(bigs.BiGSConfig(**CONFIG, layer_impl=impl), seed=5).params
                       for impl in ("fast", "reference"))
    for got, want in zip(jax.tree.leaves(reference), jax.tree.leaves(fast)):
        np.testing.assert_array_equal(got, want)


def test_undeclared_param_is_named():
    class Bare(nn.Module):
        @nn.compact
        def __call__(self, x):
            return x * self.param("gamma", nn.initializers.ones, (3,))

    shapes = jax.eval_shape(Bare().init, jax.random.PRNGKey(0), jnp.ones(3))["params"]
    with pytest.raises(TypeError, match="gamma"):
        initializers.draw_on_host(shapes, jax.random.PRNGKey(0))


@pytest.mark.parametrize("scan_layers", [True, False])
def test_params_checkpoints_and_apply_see_plain_arrays(scan_layers, tmp_path):
    """The Declared boxes stay inside init: under nn.scan and nn.remat they come out of
    eval_shape, and nothing the user holds is boxed."""
    model = bigs.FlaxBiGSForMaskedLM(bigs.BiGSConfig(**CONFIG, scan_layers=scan_layers), seed=0)
    declared = jax.tree.leaves(_declared_shapes(model.module), is_leaf=lambda x: isinstance(x, initializers.Declared))
    assert declared and all(isinstance(leaf, initializers.Declared) for leaf in declared)
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(model.params, is_leaf=nn.meta.is_axis_metadata))
    assert all(isinstance(leaf, jax.Array) for leaf in jax.tree.leaves(_traced_init(model, 0),
                                                                       is_leaf=nn.meta.is_axis_metadata))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(model.init_shapes(),
                                                                                 is_leaf=nn.meta.is_axis_metadata))
    assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(model.checkpoint_params(),
                                                                       is_leaf=nn.meta.is_axis_metadata))
    model.save_pretrained(tmp_path)
    again = bigs.FlaxBiGSForMaskedLM.from_pretrained(tmp_path)
    ids = np.ones((1, 8), np.int32)
    np.testing.assert_array_equal(again(ids).logits, model(ids).logits)


def test_built_params_are_owned_by_jax_so_a_donating_step_reuses_their_memory():
    # device_put of an aligned numpy array only wraps it on CPU, and such a buffer cannot be
    # donated: a training step would then hold the params twice.
    embedding = bigs.FlaxBiGSModel(bigs.BiGSConfig(**CONFIG)).params["embeddings"]["word_embeddings"]["embedding"]
    pointer = embedding.unsafe_buffer_pointer()
    doubled = jax.jit(lambda x: x * 2, donate_argnums=0)(embedding)
    assert doubled.unsafe_buffer_pointer() == pointer
