"""Parity with the ORIGINAL BiGS code: the golden checkpoints and outputs in ../shared/golden."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

import bigs
from bigs import ssm
from bigs.checkpoint import read_params, stack_layers, unstack_layers
from bigs.train.optim import decay_mask

CONFIGS = ("config_a", "config_c")
FOLDERS = (
    "FlaxBiGSModel", "FlaxBiGSForMaskedLM", "FlaxBiGSForPreTraining", "FlaxBiGSForNextSentencePrediction",
    "FlaxBiGSForSequenceClassification", "FlaxBiGSForSequenceClassification_regression",
    "FlaxBiGSForTokenClassification", "FlaxBiGSForQuestionAnswering", "FlaxBiGSForMultipleChoice",
)
RTOL, ATOL = 1e-5, 2e-5


def model_class(folder):
    return bigs.MODEL_CLASSES[folder.replace("_regression", "")]


def manifest(golden_dir, config):
    return json.loads((golden_dir / config / "manifest.json").read_text())


def run_golden(model, golden, **kwargs):
    return model(golden["input_ids"], attention_mask=golden["attention_mask"],
                 token_type_ids=golden["token_type_ids"], position_ids=golden["position_ids"],
                 train=False, output_hidden_states=True, **kwargs)


CASES = [(c, f, "auto") for c in CONFIGS for f in FOLDERS] + [(c, "FlaxBiGSModel", b) for c in CONFIGS
                                                               for b in ("fft", "toeplitz", "scan")]


@pytest.mark.parametrize("config, folder, backend", CASES)
def test_outputs_and_hidden_states_match_original(golden_dir, config, folder, backend):
    path = golden_dir / config / folder
    golden = np.load(path / "golden_io.npz")
    model = model_class(folder).from_pretrained(path)
    out = run_golden(model, golden, conv_backend=backend)
    expected_outputs = manifest(golden_dir, config)["models"][folder]["outputs"]
    for name, shape in expected_outputs.items():
        if name.startswith("hidden_states_"):
            ours = out.hidden_states[int(name.rsplit("_", 1)[1])]
        else:
            ours = out[name]
        assert tuple(ours.shape) == tuple(shape), name
        np.testing.assert_allclose(np.asarray(ours), golden[name], rtol=RTOL, atol=ATOL, err_msg=name)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


@pytest.mark.parametrize("scan_layers", [True, False])
@pytest.mark.parametrize("config", CONFIGS)
def test_param_tree_matches_manifest(golden_dir, config, scan_layers):
    for folder, entry in manifest(golden_dir, config)["models"].items():
        cfg = bigs.BiGSConfig.from_json_file(golden_dir / config / folder / "config.json", scan_layers=scan_layers)
        shapes = model_class(folder)(cfg, _do_init=False).init_shapes()
        tree = traverse_util.flatten_dict(unstack_layers(shapes), sep="/")
        assert {k: list(v.shape) for k, v in tree.items()} == {k: v["shape"] for k, v in entry["params"].items()}
        assert all(v.dtype == np.float32 for v in tree.values())
        if not scan_layers:  # the in-memory tree itself is the original's
            assert set(traverse_util.flatten_dict(shapes, sep="/")) == set(entry["params"])


def test_full_size_param_tree_without_memory(golden_dir):
    reference = json.loads((golden_dir / "full_size_param_tree.json").read_text())
    for name, entry in reference["models"].items():
        cfg = bigs.BiGSConfig(**reference["config_kwargs"], **entry.get("config_overrides", {}))
        model = bigs.MODEL_CLASSES[name](cfg, _do_init=False)
        shapes = traverse_util.flatten_dict(unstack_layers(model.init_shapes()), sep="/")
        assert {k: list(v.shape) for k, v in shapes.items()} == {k: v["shape"] for k, v in entry["params"].items()}
        assert sum(int(np.prod(v.shape)) for v in shapes.values()) == entry["num_params"]


@pytest.mark.parametrize("config", CONFIGS)
def test_initialiser_reproduces_deterministic_init(golden_dir, config):
    expected = manifest(golden_dir, config)["deterministic_init"]
    a_re, a_im = ssm.init_A(expected["scaling"], len(expected["A_re"]))
    np.testing.assert_array_equal(a_re, np.float32(expected["A_re"]))     # bit-exact, -0.5000003576 for hippo
    np.testing.assert_allclose(a_im, expected["A_im"], rtol=1e-6, atol=5e-5)  # float32 eigh
    cfg = bigs.BiGSConfig(**manifest(golden_dir, config)["base_config_kwargs"])
    params = bigs.FlaxBiGSModel(cfg, seed=3).checkpoint_params()
    for layer in params["encoder"]["layer"].values():
        for s4 in (layer["fs4"], layer["bs4"]):
            np.testing.assert_array_equal(s4["A_re"], a_re)
            np.testing.assert_array_equal(s4["A_im"], a_im)
            np.testing.assert_array_equal(s4["D"], [1.0])


def test_random_ssm_init_distributions():
    cfg = bigs.BiGSConfig(vocab_size=50, hidden_size=8, intermediate_size=8, num_hidden_layers=64,
                          num_ssm=64, max_position_embeddings=16)
    layers = bigs.FlaxBiGSModel(cfg, seed=0).params["encoder"]["layer"]
    C = np.concatenate([np.asarray(layers[s]["C"]).ravel() for s in ("fs4", "bs4")])
    dt = np.exp(np.concatenate([np.asarray(layers[s]["log_step"]).ravel() for s in ("fs4", "bs4")]))
    assert abs(C.std() - 0.5 ** 0.5) < 0.02 and abs(C.mean()) < 0.02      # N(0, 1/2) per part
    assert 0.01 <= dt.min() and dt.max() <= 1.0                           # log-uniform on [0.01, 1]
    assert abs(np.log(dt).mean() - np.log(0.1)) < 0.3
    assert len(np.unique(dt)) == dt.size                                  # layers differ


def test_train_step_matches_original(golden_dir):
    path = golden_dir / "config_a" / "FlaxBiGSForMaskedLM"
    golden = np.load(path / "train_step_golden.npz")
    model = bigs.FlaxBiGSForMaskedLM.from_pretrained(path)
    inputs = model.prepare_inputs(golden["input_ids"], golden["attention_mask"],
                                  golden["token_type_ids"], golden["position_ids"])
    labels = jnp.asarray(golden["labels"])

    def loss_fn(params):   # params in the checkpoint layout, as the golden's gradients
        return model.mlm_loss(*inputs[:1], labels, *inputs[1:], params=stack_layers(params)).loss

    params = model.checkpoint_params()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    assert float(loss) == pytest.approx(float(golden["loss"]), abs=2e-6)
    assert float(optax.tree.norm(grads)) == pytest.approx(float(golden["grad_global_norm"]), abs=2e-6)
    for key, grad in traverse_util.flatten_dict(grads, sep="/").items():
        np.testing.assert_allclose(grad, golden[f"grad/{key}"], rtol=1e-4, atol=2e-6, err_msg=key)

    # Full-vocabulary logits at every position give the same loss (the golden's form).
    logits = model(*inputs).logits
    mask = np.asarray(labels) != -100
    full = optax.softmax_cross_entropy_with_integer_labels(logits[mask], labels[mask]).mean()
    assert float(full) == pytest.approx(float(golden["loss"]), abs=2e-6)

    tx = optax.adamw(1e-3, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.01, mask=decay_mask(params))
    updates, _ = tx.update(grads, tx.init(params), params)
    stepped = optax.apply_updates(params, updates)
    # Adam's first step is lr * g / (|g| + eps): near g = 0 it amplifies a gradient difference
    # by lr / eps = 1000, so float32 gradient noise (~1e-9) can move a parameter by ~1e-6.
    # The bound below is 1% of lr; a wrong update (decay mask, betas) moves params by ~lr.
    for key, value in traverse_util.flatten_dict(stepped, sep="/").items():
        np.testing.assert_allclose(value, golden[f"params_after_step/{key}"], rtol=1e-5, atol=1e-5, err_msg=key)
    after = loss_fn(stepped)
    assert float(after) == pytest.approx(float(golden["loss_after_one_adamw_step"]), abs=2e-5)


def test_checkpoint_reload_is_bit_identical(golden_dir, tmp_path):
    path = golden_dir / "config_a" / "FlaxBiGSForPreTraining"
    model = bigs.FlaxBiGSForPreTraining.from_pretrained(path)
    model.save_pretrained(tmp_path)
    original = traverse_util.flatten_dict(read_params(path))
    for name in ("flax_model.msgpack", "model.safetensors"):
        folder = tmp_path / name.split(".")[0]
        folder.mkdir()
        (folder / "config.json").write_bytes((tmp_path / "config.json").read_bytes())
        (folder / name).write_bytes((tmp_path / name).read_bytes())
        again = traverse_util.flatten_dict(read_params(folder))
        assert again.keys() == original.keys()
        for key in original:
            np.testing.assert_array_equal(again[key], original[key])
