"""pad_mode="exact": each sequence's outputs equal running it alone, unpadded, whatever the
batch's padding and the pad id. pad_mode="reference" (the original's behaviour) does not.
The old name `padding` still works, in config.json and as a call keyword."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bigs import BiGSConfig, ConfigError, FlaxBiGSModel, InputError

MAX_LENGTH = 48
TOL = 1e-5


def rescaled(params):
    """Encoder dense kernels to std 1/sqrt(fan_in), as in the goldens, so the SSM branch
    changes the hidden state by O(1) instead of O(1e-6) (shared/golden/README.md)."""
    def fix(path, leaf):
        names = [getattr(k, "key", "") for k in path]
        if "encoder" in names and names[-1] == "kernel":
            return leaf * (1 / np.sqrt(leaf.shape[-2])) / 0.02
        return leaf
    return jax.tree_util.tree_map_with_path(fix, params)


@pytest.fixture(scope="module")
def model():
    config = BiGSConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                        num_ssm=8, max_position_embeddings=MAX_LENGTH)
    model = FlaxBiGSModel(config, seed=1)
    model.params = rescaled(model.params)
    return model


def batch_of(sequences, padded_length, pad_id):
    ids = np.full((len(sequences), padded_length), pad_id, np.int32)
    mask = np.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = seq
        mask[row, :len(seq)] = 1
    return ids, mask


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), lengths=st.lists(st.integers(1, 20), min_size=1, max_size=3),
       extra=st.sampled_from([0, 5, 28]), pad_id=st.integers(0, 49),
       backend=st.sampled_from(["fft", "toeplitz", "scan"]))
def test_exact_padding_equals_running_alone(model, data, lengths, extra, pad_id, backend):
    sequences = [data.draw(st.lists(st.integers(1, 49), min_size=n, max_size=n)) for n in lengths]
    ids, mask = batch_of(sequences, max(lengths) + extra, pad_id)
    out = model(ids, attention_mask=mask, pad_mode="exact", conv_backend=backend)
    for row, seq in enumerate(sequences):
        alone = model(np.asarray([seq], np.int32), pad_mode="exact", conv_backend=backend)
        n = len(seq)
        np.testing.assert_allclose(out.last_hidden_state[row, :n], alone.last_hidden_state[0], atol=TOL)
        np.testing.assert_allclose(out.pooler_output[row], alone.pooler_output[0], atol=TOL)


def test_reference_padding_depends_on_padding(model):
    """The original's behaviour: pads flow into the backward SSM of the real tokens."""
    seq = [[5, 9, 13, 2, 7]]
    alone = model(np.asarray(seq, np.int32), pad_mode="reference").last_hidden_state[0]
    for pad_id in (0, 3):
        ids, mask = batch_of(seq, MAX_LENGTH, pad_id)
        padded = model(ids, attention_mask=mask, pad_mode="reference").last_hidden_state[0, :5]
        assert float(jnp.max(jnp.abs(padded - alone))) > 1e-3


def test_pad_mode_comes_from_config_and_call(model):
    seq, (ids, mask) = [[4, 8, 15]], batch_of([[4, 8, 15]], 20, 0)
    exact = BiGSConfig.from_dict(model.config.to_dict(), pad_mode="exact")
    by_config = FlaxBiGSModel(exact, _do_init=False)
    by_config.params = model.params
    alone = model(np.asarray(seq, np.int32)).last_hidden_state[0]
    np.testing.assert_allclose(by_config(ids, attention_mask=mask).last_hidden_state[0, :3], alone, atol=TOL)
    # and the call-time value overrides the config
    reference = by_config(ids, attention_mask=mask, pad_mode="reference").last_hidden_state[0, :3]
    assert float(jnp.max(jnp.abs(reference - alone))) > 1e-3


def test_old_name_padding_still_works(model, tmp_path):
    data = model.config.to_dict()
    del data["pad_mode"]
    data["padding"] = "exact"
    (tmp_path / "config.json").write_text(json.dumps(data))        # a config.json from before the rename
    config = BiGSConfig.from_pretrained(tmp_path)
    assert config.pad_mode == "exact" and "padding" not in config.to_dict()
    assert BiGSConfig.from_pretrained(tmp_path, padding="reference").pad_mode == "reference"
    with pytest.raises(ConfigError, match="padding"):
        BiGSConfig(padding="exact", pad_mode="reference")

    ids, mask = batch_of([[4, 8, 15]], 20, 0)
    want = model(ids, attention_mask=mask, pad_mode="exact").last_hidden_state
    np.testing.assert_array_equal(model(ids, attention_mask=mask, padding="exact").last_hidden_state, want)
    inputs = model.prepare_inputs(ids, mask)
    by_module = model.module.apply({"params": model.params}, *inputs, padding="exact").last_hidden_state
    np.testing.assert_allclose(by_module, want, atol=1e-6)
    with pytest.raises(InputError, match="padding"):
        model(ids, pad_mode="exact", padding="reference")
