"""The model's public API on tiny configs: config I/O, loading and its report, bad input,
dtypes, dropout, hidden states, and the published import paths."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bigs
from bigs import BiGSConfig, CheckpointError, ConfigError, InputError
from bigs.checkpoint import FLAX_WEIGHTS_NAME

TINY = dict(vocab_size=97, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_ssm=4,
            max_position_embeddings=32)


def tiny(**overrides):
    return BiGSConfig(**{**TINY, **overrides})


def batch(length=12, rows=2, vocab=97, seed=0):
    rs = np.random.RandomState(seed)
    ids = rs.randint(1, vocab, size=(rows, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, length // 2:] = 0
    ids[0, length // 2:] = 0
    return ids, mask


# ------------------------------------------------------------------------- config
def test_config_round_trip_keeps_original_and_unknown_keys(tmp_path, golden_dir):
    original = json.loads((golden_dir / "config_a" / "FlaxBiGSForSequenceClassification" / "config.json").read_text())
    cfg = BiGSConfig.from_dict(original)
    cfg.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    for key, value in original.items():
        assert written[key] == value, key
    assert cfg.num_labels == 3 and cfg.extra["transformers_version"] == "4.26.1"
    assert BiGSConfig.from_pretrained(tmp_path) == cfg


def test_config_keeps_a_key_it_does_not_know(tmp_path):
    cfg = BiGSConfig(**TINY, some_future_key={"a": 1})
    cfg.save_pretrained(tmp_path)
    assert BiGSConfig.from_pretrained(tmp_path).extra["some_future_key"] == {"a": 1}


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size="64"), "hidden_size"),
    (dict(num_hidden_layers=0), "num_hidden_layers"),
    (dict(pre_norm="yes"), "pre_norm"),
    (dict(hidden_dropout_prob=1.5), "hidden_dropout_prob"),
    (dict(scaling="legs"), "scaling"),
    (dict(pooler_type="cls"), "pooler_type"),
    (dict(pad_token_id=500), "pad_token_id"),
    (dict(num_labels=0), "num_labels"),
    (dict(pad_mode="left"), "pad_mode"),
    (dict(layer_impl="fastest"), "layer_impl"),
    (dict(conv_precision="float16"), "conv_precision"),
    (dict(vocab_size=True), "vocab_size"),
    (dict(token_block=-1), "token_block"),
    (dict(token_block=2.5), "token_block"),
])
def test_config_rejects_wrong_types_and_values(bad, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**bad)


def test_config_override_of_none_is_a_value_only_where_none_is_allowed():
    config = tiny(token_block=256, classifier_dropout=0.2)
    copied = config.copy(token_block=None, classifier_dropout=None, hidden_size=None)
    assert copied.token_block is None and copied.classifier_dropout is None   # back to "auto" / unset
    assert copied.hidden_size == config.hidden_size                            # None: not given


def test_config_file_that_is_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        BiGSConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_bytes(b'{"hidden_size": "\xe9"}')      # Windows-1252, not UTF-8
    with pytest.raises(ConfigError, match="config.json' is not valid JSON.*utf-8.*expected a BiGS config.json"):
        BiGSConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("[1]")
    with pytest.raises(ConfigError, match="holds a JSON list, not an object"):
        BiGSConfig.from_pretrained(tmp_path)


# ------------------------------------------------------------------ calling models
def test_any_length_up_to_the_maximum_and_hidden_states():
    model = bigs.FlaxBiGSModel(tiny())
    for length in (1, 7, 32):
        ids = np.ones((2, length), np.int32)
        out = model(ids, output_hidden_states=True)
        assert out.last_hidden_state.shape == (2, length, 16)
        assert len(out.hidden_states) == 3 and out.pooler_output.shape == (2, 16)
    assert model(ids, output_hidden_states=False).hidden_states is None
    assert isinstance(model(ids, return_dict=False), tuple)


def test_scan_and_unrolled_layers_agree():
    ids, mask = batch()
    scanned = bigs.FlaxBiGSForMaskedLM(tiny(scan_layers=True), seed=1)
    unrolled = bigs.FlaxBiGSForMaskedLM(tiny(scan_layers=False))
    unrolled.set_checkpoint_params(scanned.checkpoint_params())
    a = scanned(ids, attention_mask=mask, output_hidden_states=True)
    b = unrolled(ids, attention_mask=mask, output_hidden_states=True)
    np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)
    for x, y in zip(a.hidden_states, b.hidden_states):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_dropout_in_training_needs_an_rng_and_uses_it():
    ids, mask = batch()
    model = bigs.FlaxBiGSForSequenceClassification(tiny())
    evaluation = model(ids, attention_mask=mask).logits
    with pytest.raises(InputError, match="dropout_rng"):
        model(ids, attention_mask=mask, train=True)
    first = model(ids, attention_mask=mask, train=True, dropout_rng=jax.random.PRNGKey(0)).logits
    again = model(ids, attention_mask=mask, train=True, dropout_rng=jax.random.PRNGKey(0)).logits
    other = model(ids, attention_mask=mask, train=True, dropout_rng=jax.random.PRNGKey(1)).logits
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, evaluation) and not np.allclose(first, other)


def test_bfloat16_compute_keeps_float32_params():
    ids, mask = batch()
    full = bigs.FlaxBiGSForSequenceClassification(tiny())
    half = bigs.FlaxBiGSForSequenceClassification(tiny(), dtype=jnp.bfloat16)
    half.params = full.params
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(half.params))
    out = half(ids, attention_mask=mask)
    assert out.logits.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out.logits, np.float32), full(ids, attention_mask=mask).logits, atol=0.05)
    with pytest.raises(ConfigError, match="float32 or bfloat16"):
        bigs.FlaxBiGSModel(tiny(), dtype=jnp.float16)


def test_every_head_runs_with_its_output_names():
    ids, mask = batch()
    expected = {
        "FlaxBiGSModel": {"last_hidden_state": (2, 12, 16), "pooler_output": (2, 16)},
        "FlaxBiGSForMaskedLM": {"logits": (2, 12, 97)},
        "FlaxBiGSForPreTraining": {"prediction_logits": (2, 12, 97), "seq_relationship_logits": (2, 2)},
        "FlaxBiGSForNextSentencePrediction": {"logits": (2, 2)},
        "FlaxBiGSForSequenceClassification": {"logits": (2, 2)},
        "FlaxBiGSForTokenClassification": {"logits": (2, 12, 2)},
        "FlaxBiGSForQuestionAnswering": {"start_logits": (2, 12), "end_logits": (2, 12)},
    }
    for name, fields in expected.items():
        out = bigs.MODEL_CLASSES[name](tiny())(ids, attention_mask=mask)
        assert {k: tuple(out[k].shape) for k in fields} == fields, name
    choices = np.stack([ids, ids, ids], axis=1)
    out = bigs.FlaxBiGSForMultipleChoice(tiny())(choices, attention_mask=np.stack([mask] * 3, axis=1))
    assert out.logits.shape == (2, 3)
    with pytest.raises(ConfigError, match="num_labels=2"):
        bigs.FlaxBiGSForQuestionAnswering(tiny(num_labels=3))


def test_regression_head():
    model = bigs.FlaxBiGSForSequenceClassification(tiny(num_labels=1))
    assert model(batch()[0]).logits.shape == (2, 1)


# --------------------------------------------------------------------- bad input
@pytest.mark.parametrize("make, message", [
    (lambda ids, mask: dict(input_ids=np.where(ids == ids[1, 2], -1, ids)), r"input_ids holds -1"),
    (lambda ids, mask: dict(input_ids=np.where(ids == ids[1, 2], 97, ids)), r"input_ids holds 97 .*vocab_size=97"),
    (lambda ids, mask: dict(input_ids=np.ones((2, 33), np.int32)), r"length 33 is longer than max_position_embeddings=32"),
    (lambda ids, mask: dict(input_ids=ids, attention_mask=mask[:, :5]), r"attention_mask has shape \(2, 5\)"),
    (lambda ids, mask: dict(input_ids=ids, token_type_ids=np.zeros((3, 12), np.int32)), r"token_type_ids has shape"),
    (lambda ids, mask: dict(input_ids=ids, token_type_ids=np.full_like(ids, 2)), r"token_type_ids holds 2"),
    (lambda ids, mask: dict(input_ids=ids, attention_mask=np.zeros_like(mask)), r"attention_mask row 0 is all zeros"),
    (lambda ids, mask: dict(input_ids=ids, attention_mask=mask * 3), r"only 0 \(pad\) and 1"),
    (lambda ids, mask: dict(input_ids=ids[0]), r"shape \[batch, length\]"),
    (lambda ids, mask: dict(input_ids=ids.astype(np.float32)), r"must be integers"),
])
def test_bad_input_gets_a_clear_error(make, message):
    ids, mask = batch()
    model = bigs.FlaxBiGSForSequenceClassification(tiny())
    with pytest.raises(InputError, match=message):
        model(**make(ids, mask))


def test_bad_call_options():
    model = bigs.FlaxBiGSModel(tiny())
    with pytest.raises(InputError, match="pad_mode"):
        model(np.ones((1, 4), np.int32), pad_mode="left")
    with pytest.raises(InputError, match="conv_backend"):
        model(np.ones((1, 4), np.int32), conv_backend="cuda")
    with pytest.raises(InputError, match="layer_impl"):
        model(np.ones((1, 4), np.int32), layer_impl="fastest")


# -------------------------------------------------------------------- checkpoints
def test_save_and_load_round_trip_with_tokenizer(tmp_path, vocab_file):
    from bigs.tokenizer import BiGSTokenizer

    tokenizer = BiGSTokenizer.from_vocab(vocab_file)
    model = bigs.FlaxBiGSForSequenceClassification(tiny(vocab_size=tokenizer.vocab_size, num_labels=3), seed=4)
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    assert {"config.json", FLAX_WEIGHTS_NAME, "model.safetensors", "vocab.txt", "tokenizer.json"} <= {
        p.name for p in tmp_path.iterdir()}
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BiGSForSequenceClassification"]
    again = bigs.FlaxBiGSForSequenceClassification.from_pretrained(tmp_path)
    encoded = BiGSTokenizer.from_pretrained(tmp_path)(["a short sentence", "another one, longer than that"])
    np.testing.assert_array_equal(model(**encoded).logits, again(**encoded).logits)


def test_head_and_base_checkpoints_load_into_each_other(tmp_path):
    ids, mask = batch()
    base = bigs.FlaxBiGSModel(tiny(), seed=5)
    base.save_pretrained(tmp_path / "base")
    head, report = bigs.FlaxBiGSForSequenceClassification.from_pretrained(tmp_path / "base", output_loading_info=True)
    assert "base-model checkpoint" in report.prefix_change
    assert report.missing_keys == ["classifier/bias", "classifier/kernel"] and not report.unexpected_keys
    np.testing.assert_allclose(head(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1],
                               base(ids, attention_mask=mask).last_hidden_state, atol=1e-6)

    mlm = bigs.FlaxBiGSForMaskedLM(tiny(), seed=6)
    mlm.save_pretrained(tmp_path / "mlm")
    back, report = bigs.FlaxBiGSModel.from_pretrained(tmp_path / "mlm", output_loading_info=True)
    assert "head-model checkpoint" in report.prefix_change
    assert "pooler/dense/kernel" in report.missing_keys          # MaskedLM has no pooler
    assert "cls/predictions/bias" in report.unexpected_keys
    np.testing.assert_allclose(back(ids, attention_mask=mask).last_hidden_state,
                               mlm(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1], atol=1e-6)


def test_mnli_head_for_a_two_label_task_is_reinitialised_and_reported(tmp_path, caplog):
    mnli = bigs.FlaxBiGSForSequenceClassification(tiny(num_labels=3), seed=7)
    mnli.save_pretrained(tmp_path)
    with caplog.at_level(logging.WARNING, logger="bigs"):
        model, report = bigs.FlaxBiGSForSequenceClassification.from_pretrained(
            tmp_path, num_labels=2, output_loading_info=True)
    assert [k for k, *_ in report.mismatched_keys] == ["classifier/bias", "classifier/kernel"]
    assert "re-initialised 2 head parameters" in caplog.text and "classifier/kernel (16, 3) -> (16, 2)" in caplog.text
    assert model(batch()[0]).logits.shape == (2, 2)
    regression = bigs.FlaxBiGSForSequenceClassification.from_pretrained(tmp_path, num_labels=1)
    assert regression(batch()[0]).logits.shape == (2, 1)


def test_config_that_does_not_match_the_checkpoint(tmp_path):
    bigs.FlaxBiGSModel(tiny()).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"embeddings/LayerNorm/bias has shape \(16,\) but the config gives \(8,\)"):
        bigs.FlaxBiGSModel.from_pretrained(tmp_path, hidden_size=8)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_msgpack(tmp_path, damage):
    bigs.FlaxBiGSModel(tiny()).save_pretrained(tmp_path, safe_serialization=False)
    path = tmp_path / FLAX_WEIGHTS_NAME
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\xc1" * 100, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        bigs.FlaxBiGSModel.from_pretrained(tmp_path)


def test_missing_folder_and_unreachable_hub_id(tmp_path):
    with pytest.raises(CheckpointError, match="has no config.json"):
        bigs.FlaxBiGSModel.from_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"JunxiongWang/BiGS_512_MNLI.*not in the local cache"):
        bigs.FlaxBiGSForSequenceClassification.from_pretrained("JunxiongWang/BiGS_512_MNLI", local_files_only=True)


def test_hub_download_is_used_for_hub_ids(tmp_path, monkeypatch):
    """A hub id goes through huggingface_hub.hf_hub_download (served here from a local folder)."""
    import huggingface_hub

    bigs.FlaxBiGSModel(tiny(), seed=8).save_pretrained(tmp_path)
    asked = []

    def fake_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        if not (tmp_path / filename).exists():
            from huggingface_hub.errors import EntryNotFoundError
            raise EntryNotFoundError(f"{filename} not found")
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model = bigs.FlaxBiGSModel.from_pretrained("someone/tiny-bigs")
    assert ("someone/tiny-bigs", "config.json") in asked and ("someone/tiny-bigs", FLAX_WEIGHTS_NAME) in asked
    assert model.config.hidden_size == 16


def test_published_import_paths():
    from BiGS.configuration_bigs import BiGSConfig as AliasConfig
    from BiGS.modeling_flax_bigs import FlaxBiGSForSequenceClassification

    assert AliasConfig is BiGSConfig
    assert FlaxBiGSForSequenceClassification is bigs.FlaxBiGSForSequenceClassification


def test_safetensors_with_nan_is_rejected_like_msgpack(tmp_path):
    from safetensors.numpy import load_file, save_file

    bigs.FlaxBiGSModel(tiny()).save_pretrained(tmp_path)
    (tmp_path / FLAX_WEIGHTS_NAME).unlink()                  # only model.safetensors remains
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["pooler.dense.bias"][0] = np.nan                 # the PyTorch layout
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="pooler/dense/bias holds NaN or inf"):
        bigs.FlaxBiGSModel.from_pretrained(tmp_path)
