"""The shared training loop: it stops at the first non-finite value without saving anything
from it (case C10), and an update's loss and gradient do not depend on how its examples are
split over micro-batches and devices (case C09), in fine-tuning and pretraining alike."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bigs.cli import glue
from bigs.cli import pretrain as pretrain_cli
from bigs.errors import NonFiniteError
from bigs.train import sharding
from bigs.train.arguments import TrainingArguments
from bigs.train.loop import Batch, Task, train
from bigs.train.output_dir import read_metrics

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_flags(vocab_file) -> list[str]:
    """The `TINY` flags of shared/cases/README.md."""
    return ["--tokenizer_name", str(vocab_file), "--hidden_size", "32", "--num_hidden_layers", "1",
            "--intermediate_size", "64", "--num_ssm", "8", "--max_position_embeddings", "64", "--max_seq_length", "64"]


def c10_argv(shared_dir, vocab_file, out, *extra) -> list[str]:
    train = str(shared_dir / "cases" / "C10" / "train.csv")
    return [*tiny_flags(vocab_file), "--train_file", train, "--validation_file", train, "--output_dir", str(out),
            "--max_steps", "6", "--per_device_train_batch_size", "2", "--learning_rate", "1e30", "--max_grad_norm", "0",
            "--disable_tqdm", *extra]


@pytest.mark.parametrize("logging_steps", ["1", "100"])
def test_a_nan_loss_stops_training_at_its_step(shared_dir, vocab_file, tmp_path, capsys, logging_steps):
    """Case C10: lr 1e30 without clipping makes step 2's loss NaN. Logged every step, or
    checked with the steps since the last check at the step-2 evaluation, the run stops
    there naming step 2, exits 1, and nothing is evaluated, selected or saved."""
    out = tmp_path / "out"
    assert glue.main(c10_argv(shared_dir, vocab_file, out, "--eval_steps", "2", "--logging_steps", logging_steps)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bigs glue: error: step 2: loss nan"), err
    assert not (out / "checkpoints").exists() and not (out / "eval_results.json").exists()
    assert not (out / "flax_model.msgpack").exists()
    assert [record["step"] for record in read_metrics(out)] == ([1] if logging_steps == "1" else [])


def test_an_evaluation_never_scores_non_finite_logits(shared_dir, vocab_file, tmp_path, capsys):
    """Step 1's loss is finite, but its update overflows the model: evaluating after it
    finds NaN logits, which are reported, not scored, and nothing of step 1 is saved."""
    out = tmp_path / "out"
    assert glue.main(c10_argv(shared_dir, vocab_file, out, "--eval_steps", "1")) == 1
    err = capsys.readouterr().err
    assert "evaluation after step 1: the model gives non-finite logits" in err
    assert not (out / "checkpoints").exists() and not (out / "flax_model.msgpack").exists()


class ToyTask(Task):
    """Least squares on one weight vector; the batch of step `poisoned` has an infinite target."""

    keep_best = True

    def __init__(self, output_dir: Path, poisoned: int):
        self.output_dir, self.poisoned = output_dir, poisoned

    def loss(self, params, micro, dropout_rng):
        error = micro["x"] @ params["w"] - micro["y"]
        return {"loss": jnp.sum(error ** 2), "count": jnp.asarray(micro["y"].shape[0], jnp.float32)}

    def batches(self, start_step, position):
        step = start_step
        while True:
            step += 1
            y = np.full((1, 2), np.inf if step == self.poisoned else float(step), np.float32)
            yield Batch({"x": np.ones((1, 2, 3), np.float32), "y": y}, {"step": step}, 2)

    def evaluate(self, params):
        return {"eval": {"w0": float(params["w"][0])}}

    def score(self, metrics):
        return -abs(metrics["eval"]["w0"])

    def export(self, params):
        np.save(self.output_dir / "model.npy", np.asarray(params["w"]))


def test_what_was_saved_before_a_non_finite_step_stays_byte_for_byte(tmp_path):
    """Checkpoints and the best model of steps 1 and 2 are left exactly as they were when
    step 3's loss is infinite (metrics fetched only at evaluations, every 2 steps)."""
    params = {"w": jnp.zeros(3)}
    tx = optax.sgd(1e-2)

    def run(max_steps, poisoned):
        args = TrainingArguments(output_dir=str(tmp_path), max_steps=max_steps, logging_steps=100, eval_steps=2,
                                 save_steps=1, disable_tqdm=True, report_to="none", resume=None)
        return train(ToyTask(tmp_path, poisoned), args, model=None, tx=tx, schedule=lambda step: 1e-2,
                     mesh=sharding.make_mesh(1), settings={"toy": 1}, params=params)

    assert run(2, poisoned=0)["step"] == 2
    before = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    with pytest.raises(NonFiniteError, match=r"step 3: loss inf.*latest checkpoint \(step 2\)"):
        run(4, poisoned=3)
    after = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    changed = [path.name for path in before if before[path] != after.get(path)]
    assert changed == [] and set(after) - set(before) == {tmp_path / "run_settings.json"} - set(before)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1", "2"]


def test_pretraining_stops_at_a_non_finite_loss(tmp_path, capsys):
    from test_pretrain import make_tiny_shards, tiny_flags as pretrain_flags

    shards = make_tiny_shards(tmp_path / "data")
    argv = pretrain_flags(shards, tmp_path / "out", "--num_total_train_steps", "4", "--learning_rate", "1e30",
                          "--max_grad_norm", "0", "--warmup_steps", "0", "--report_to", "none", "--eval_steps", "0")
    assert pretrain_cli.main(argv) == 1
    assert "step 2: loss nan" in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoints").exists() and not (tmp_path / "out" / "flax_model.msgpack").exists()


SPLITS = """
import json, sys
import jax
from bigs.data.build import build_shards
from bigs.train.output_dir import read_metrics
from bigs.train.pretrain import PretrainArgs, run_pretraining
from bigs.train.finetune import FinetuneConfig, run

corpus, vocab, work, train_csv = sys.argv[1:5]
assert len(jax.devices()) == 2, jax.devices()
shards = f"{work}/shards"
build_shards([corpus], shards, vocab, max_seq_length=32, max_predictions_per_seq=5, next_sentence=False,
             heldout_fraction=0.1, dupe_factor=1)
splits = {"8x1": (8, 1, 1), "2x4": (2, 1, 4), "2 devices x 4": (4, 2, 1)}
common = dict(max_steps=1, logging_steps=1, seed=0, learning_rate=1e-3, warmup_steps=0, disable_tqdm=True,
              report_to="none")
results = {"pretrain": {}, "finetune": {}}
for name, (per_device, devices, accumulation) in splits.items():
    args = PretrainArgs(output_dir=f"{work}/pre {name}", dataset_path=shards, max_seq_length=32, n_layers=1,
                        hidden_size=32, intermediate_size=64, num_ssm=8, hidden_dropout_prob=0.0, eval_steps=0,
                        save_steps=1, per_device_train_batch_size=per_device, num_devices=devices,
                        gradient_accumulation_steps=accumulation, **common)
    run_pretraining(args)
    results["pretrain"][name] = read_metrics(args.output_dir)[0]
    config = FinetuneConfig(output_dir=f"{work}/fine {name}", train_file=train_csv, tokenizer_name=vocab,
                            max_seq_length=64, model_overrides=dict(hidden_size=32, num_hidden_layers=1,
                            intermediate_size=64, num_ssm=8, max_position_embeddings=64, hidden_dropout_prob=0.0),
                            per_device_train_batch_size=per_device, num_devices=devices,
                            gradient_accumulation_steps=accumulation, do_train=True, **common)
    run(config)
    results["finetune"][name] = read_metrics(config.output_dir)[0]
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.slow
def test_an_update_is_the_same_however_its_examples_are_split(shared_dir, vocab_file, tmp_path):
    """Case C09: 8 examples per update as 8x1 and 2x4 (per-device batch x accumulation
    steps) and as 2 devices x 4 give the same step-1 loss and gradient norm (1e-5 relative),
    in pretraining (documents of very different lengths, so micro-batches hold different
    numbers of masked tokens) and in fine-tuning. Dropout is off: its masks depend on the split."""
    train_csv = tmp_path / "train.csv"
    lengths = [3, 40, 5, 22, 9, 31, 2, 17]   # examples of very different lengths
    train_csv.write_text("sentence,label\n" + "".join(f"{' '.join(['word'] * n)} end,{n % 2}\n" for n in lengths))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", SPLITS, str(shared_dir / "cases" / "C09" / "corpus" / "docs.txt"),
                           str(vocab_file), str(tmp_path), str(train_csv)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout.split("RESULTS", 1)[1])
    for command, runs in results.items():
        reference = runs.pop("8x1")
        for name, record in runs.items():
            for metric in ("loss", "grad_norm"):
                assert record[metric] == pytest.approx(reference[metric], rel=1e-5), (command, name, metric)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_that_python_swallows_is_still_noted():
    """A Ctrl-C landing in a garbage-collector callback is dropped by Python ("Exception
    ignored in ..."); the loop's note of it still stops training after the step."""
    import gc
    import os
    import signal

    from bigs.runtime import ctrl_c_noted

    def callback(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)       # raised in the callback: Python ignores it

    with ctrl_c_noted() as noted:
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)
        assert noted == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), ctrl_c_noted():
        os.kill(os.getpid(), signal.SIGINT)           # elsewhere it raises as usual
