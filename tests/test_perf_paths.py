"""The performance paths keep the model's numbers: scanned layers (compile size independent
of depth), remat, token blocks, checkpoints across layouts, bfloat16 compute, the gathered
MLM loss, and the benchmark script's quick mode."""

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bigs import BiGSConfig, FlaxBiGSForMaskedLM, FlaxBiGSModel, backends

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_ssm=8, max_position_embeddings=32)


def tiny_inputs(batch=2, length=24, seed=0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(1, TINY["vocab_size"], (batch, length)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[0, length // 2:] = 0
    return ids, mask


def compiled_forward_text(num_layers, scan_layers):
    model = FlaxBiGSModel(BiGSConfig(**TINY, num_hidden_layers=num_layers, scan_layers=scan_layers))
    ids, mask = tiny_inputs()
    forward = jax.jit(lambda params, *inputs: model.module.apply({"params": params}, *inputs))
    return forward.lower(model.params, *model.prepare_inputs(ids, mask)).compile().as_text()


def op_count(hlo_text):
    return len(re.findall(r"^\s*(?:ROOT\s+)?%?[\w.\-]+ = ", hlo_text, flags=re.M))


def test_scanned_layers_compile_to_the_same_program_at_any_depth():
    two, eight = compiled_forward_text(2, True), compiled_forward_text(8, True)
    assert two.count(" while(") == eight.count(" while(")
    assert abs(op_count(eight) - op_count(two)) <= 0.05 * op_count(two)
    # Unrolled layers grow with depth: the check above would notice losing the scan.
    assert op_count(compiled_forward_text(8, False)) > 2 * op_count(compiled_forward_text(2, False))


def test_backward_keeps_matmul_outputs_not_elementwise_intermediates():
    """The layer's checkpoint policy (fast_layer.SAVE_MATMULS) gives the same gradients as
    plain autodiff, in much less memory."""
    config = BiGSConfig(**{**TINY, "hidden_size": 64, "intermediate_size": 256, "max_position_embeddings": 64},
                        num_hidden_layers=3)
    model = FlaxBiGSForMaskedLM(config, seed=0)
    ids = np.random.RandomState(0).randint(1, TINY["vocab_size"], (4, 64)).astype(np.int32)
    inputs = model.prepare_inputs(ids)
    labels = jnp.asarray(np.where(np.arange(64) % 7 == 0, ids, -100))

    def compiled_grad(**options):
        def loss(params):
            return model.module.apply({"params": params}, *inputs, labels, max_predictions=10,
                                      method=model.module_class.mlm_loss, **options).loss
        compiled = jax.jit(jax.grad(loss)).lower(model.params).compile()
        return compiled(model.params), compiled.memory_analysis().temp_size_in_bytes

    grads, temp = compiled_grad()
    # Everything saveable: what plain autodiff stores.
    grads_all, temp_all = compiled_grad(remat_policy=jax.checkpoint_policies.everything_saveable)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_all)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert temp < 0.5 * temp_all, (temp, temp_all)


def test_remat_gives_the_same_outputs_and_gradients():
    ids, mask = tiny_inputs()
    labels = np.where(np.arange(ids.shape[1]) % 5 == 0, ids, -100)
    results = []
    for remat in (False, True):
        model = FlaxBiGSForMaskedLM(BiGSConfig(**TINY, num_hidden_layers=3, remat=remat), seed=0)

        def loss(params):
            return model.mlm_loss(ids, labels, attention_mask=mask, params=params, max_predictions=8).loss
        results.append((model(ids, attention_mask=mask).logits, jax.grad(loss)(model.params)))
    (logits, grads), (logits_remat, grads_remat) = results
    np.testing.assert_allclose(logits_remat, logits, atol=1e-6)
    for got, want in zip(jax.tree.leaves(grads_remat), jax.tree.leaves(grads)):
        np.testing.assert_allclose(got, want, atol=1e-6)


def while_loops(model, ids, mask, deterministic=True):
    forward = jax.jit(lambda params, *inputs: model.module.apply(
        {"params": params}, *inputs, deterministic=deterministic, rngs={"dropout": jax.random.PRNGKey(0)}))
    text = forward.lower(model.params, *model.prepare_inputs(ids, mask)).compile().as_text()
    return text.count(" while(")


@pytest.mark.parametrize("pad_mode", ["reference", "exact"])
def test_token_blocks_give_the_same_outputs_and_gradients(pad_mode):
    """The layers' position-wise work in blocks of tokens equals all tokens at once: blocks
    that divide the 48 tokens (16) and that leave a remainder (7: six of 7, then 6); outputs
    and gradients. One block of all 48 tokens compiles to no loop at all."""
    ids, mask = tiny_inputs()
    labels = np.where(np.arange(ids.shape[1]) % 5 == 0, ids, -100)
    results, loops = {}, {}
    for block in (0, 7, 16, 48):
        model = FlaxBiGSForMaskedLM(BiGSConfig(**TINY, num_hidden_layers=2, pad_mode=pad_mode, token_block=block),
                                    seed=0)
        loops[block] = while_loops(model, ids, mask)
        if block == 48:
            continue

        def loss(params):
            return model.mlm_loss(ids, labels, attention_mask=mask, params=params, max_predictions=8).loss
        out = model(ids, attention_mask=mask, output_hidden_states=True)
        results[block] = (out.logits, out.hidden_states[-1], jax.grad(loss)(model.params))
    assert loops[7] > loops[0] and loops[16] > loops[0] and loops[48] == loops[0]   # blocks run as a loop
    for block in (7, 16):
        for got, want in zip(jax.tree.leaves(results[block]), jax.tree.leaves(results[0])):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_token_block_auto_blocks_inference_on_cpu_only():
    """config.token_block=None: blocks of TOKEN_BLOCK tokens in inference on CPU; all
    tokens at once in training (deterministic=False) and on GPUs and TPUs."""
    def token_block(deterministic, platform):
        return backends.resolve(BiGSConfig(**TINY), 32, deterministic=deterministic, platform=platform).token_block
    assert token_block(True, "cpu") == backends.TOKEN_BLOCK
    assert token_block(False, "cpu") == 0
    assert token_block(True, "gpu") == token_block(True, "tpu") == 0
    length = backends.TOKEN_BLOCK          # two sequences: more tokens than one block
    ids, mask = tiny_inputs(length=length)
    size = {**TINY, "max_position_embeddings": length, "num_hidden_layers": 2}
    auto = FlaxBiGSModel(BiGSConfig(**size), seed=0)
    whole = FlaxBiGSModel(BiGSConfig(**size, token_block=0), seed=0)
    if jax.default_backend() == "cpu":
        assert while_loops(auto, ids, mask) > while_loops(whole, ids, mask)
    assert while_loops(auto, ids, mask, deterministic=False) == while_loops(whole, ids, mask, deterministic=False)


def test_checkpoint_round_trip_between_scanned_and_unrolled_layers(tmp_path):
    scanned = FlaxBiGSModel(BiGSConfig(**TINY, num_hidden_layers=3, scan_layers=True), seed=2)
    scanned.save_pretrained(tmp_path)
    unrolled = FlaxBiGSModel.from_pretrained(tmp_path, scan_layers=False)
    assert "0" in unrolled.params["encoder"]["layer"]           # per-layer layout
    for got, want in zip(jax.tree.leaves(unrolled.checkpoint_params()), jax.tree.leaves(scanned.checkpoint_params())):
        np.testing.assert_array_equal(got, want)
    ids, mask = tiny_inputs()
    np.testing.assert_allclose(unrolled(ids, attention_mask=mask).last_hidden_state,
                               scanned(ids, attention_mask=mask).last_hidden_state, atol=1e-6)
    again = FlaxBiGSModel.from_pretrained(tmp_path)
    for got, want in zip(jax.tree.leaves(again.params), jax.tree.leaves(scanned.params)):
        np.testing.assert_array_equal(got, want)


# bfloat16 keeps 8 significant bits (relative rounding 2^-9) and the residual stream is
# bfloat16, so after the embeddings and two layers the outputs carry a few bf16 roundings
# at their largest values. Measured on config_a (docs/performance.md): last_hidden_state
# max abs 0.029 at max |x| 4.08 (0.7%), MLM logits max abs 0.0088 at max 0.76 (1.2%),
# relative RMS 0.5-0.7%. Bounds: relative RMS 2^-6 and max abs 2^-5 of the largest value.
@pytest.mark.parametrize("name,key", [("FlaxBiGSModel", "last_hidden_state"), ("FlaxBiGSForMaskedLM", "logits")])
def test_bfloat16_compute_stays_close_to_float32(golden_dir, name, key):
    from bigs import MODEL_CLASSES

    folder = golden_dir / "config_a" / name
    golden = np.load(folder / "golden_io.npz")
    model = MODEL_CLASSES[name].from_pretrained(folder, dtype=jnp.bfloat16)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model.params))
    out = model(golden["input_ids"], attention_mask=golden["attention_mask"],
                token_type_ids=golden["token_type_ids"])[key]
    got, want = np.asarray(out.astype(jnp.float32)), golden[key]
    largest = np.max(np.abs(want))
    assert np.sqrt(np.mean((got - want) ** 2) / np.mean(want ** 2)) < 2 ** -6
    assert np.max(np.abs(got - want)) < 2 ** -5 * largest


def test_mlm_loss_at_labelled_positions_equals_full_logits_loss():
    model = FlaxBiGSForMaskedLM(BiGSConfig(**TINY, num_hidden_layers=2), seed=3)
    ids, mask = tiny_inputs(batch=3)
    rng = np.random.RandomState(1)
    labels = np.where(rng.rand(*ids.shape) < 0.2, rng.randint(0, TINY["vocab_size"], ids.shape), -100)
    labels[2] = -100                                          # a row with nothing labelled
    labels[0, 3] = 7
    logits = np.asarray(model(ids, attention_mask=mask).logits, np.float64)
    log_probs = logits - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    where = labels != -100
    expected = -np.mean(log_probs[where, labels[where]])
    got = model.mlm_loss(ids, labels, attention_mask=mask)
    assert int(got.count) == int(where.sum())
    np.testing.assert_allclose(float(got.loss), expected, rtol=1e-5)
    assert int(got.correct) == int(np.sum(np.argmax(logits, -1)[where] == labels[where]))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_bench_quick_runs(tmp_path, dtype):
    out = tmp_path / "bench.json"
    torch_rows = [] if dtype == "float32" else ["--no-torch-bigs"]   # PyTorch BiGS runs in both dtypes anyway
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench.py"), "--quick", "--in-process",
                           "--no-bert", "--modes", "forward", "--dtype", dtype, "--json", str(out), *torch_rows],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "tok/s" in done.stdout
    import json
    result = json.loads(out.read_text())
    assert result["dtype"] == dtype and result["platform"] == "cpu"
    rows = result["rows"]
    assert rows and all(row["tokens_per_s"] > 0 and row["mfu"] > 0 and row["memory_gb"] > 0 for row in rows)


def test_train_variants_runs_and_leaves_the_library_unchanged(tmp_path):
    import importlib.util
    import json

    from bigs import backends, fast_layer, modeling, ssm

    spec = importlib.util.spec_from_file_location("train_variants", ROOT / "benchmarks" / "train_variants.py")
    variants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(variants)
    modules = (ssm, fast_layer, backends, modeling)
    before = [dict(vars(module)) for module in modules]
    out = tmp_path / "variants.json"
    variants.main(["--tiny", "--variants", "base", "policy-dots", "highest", "forward-whole", "--json", str(out)])
    for module, names in zip(modules, before):                 # the library is as it was
        assert vars(module).keys() == names.keys() and all(vars(module)[k] is v for k, v in names.items())
    rows = json.loads(out.read_text())["variants"]
    assert set(rows) == {"base", "policy-dots", "highest", "forward-whole"}
    assert all(row["ms"] > 0 and row["compile_s"] > 0 for row in rows.values())


def test_pretrain_step_benchmark_compares_the_same_step(tmp_path):
    out = tmp_path / "pretrain_step.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pretrain_step.py"), "--layers", "1",
                           "--hidden", "16", "--intermediate", "32", "--num-ssm", "4", "--vocab", "97",
                           "--batch", "2", "--length", "16", "--predictions", "3", "--rounds", "1",
                           "--repeats", "2", "--json", str(out)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    import json
    cases = json.loads(out.read_text())["cases"]
    assert {"fused/hugepages-off", "autodiff/hugepages-off"} <= set(cases)
    # Three steps of the same training from the same seed: the two losses agree.
    losses = [case["loss"] for case in cases.values()]
    np.testing.assert_allclose(losses, losses[0], rtol=1e-4)
