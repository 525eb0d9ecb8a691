"""Pretraining end to end through the CLI: flags, exact resume after SIGKILL, evaluation, export."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from bigs.cli.pretrain import main
from bigs.data.build import build_shards
from bigs.tokenizer import train_wordpiece
from bigs.train.progress import read_scalars

ROOT = Path(__file__).resolve().parents[1]
WORDS = "the cat sat on a mat while dogs ran far away from big red houses near green trees".split()


def make_tiny_shards(folder: Path) -> Path:
    """~130 train and ~17 held-out sequences of length 32 over a ~60-token vocabulary."""
    rng = np.random.default_rng(0)
    documents = []
    for _ in range(40):
        sentences = [" ".join(rng.choice(WORDS, rng.integers(5, 13))).capitalize() + "." for _ in range(6)]
        documents.append(" ".join(sentences))
    folder.mkdir(parents=True, exist_ok=True)
    text = folder / "text.txt"
    text.write_text("\n\n".join(documents) + "\n")
    shards = folder / "shards"
    vocab = train_wordpiece([text], 60, shards)
    build_shards([text], shards, vocab, max_seq_length=32, max_predictions_per_seq=5, heldout_fraction=0.1,
                 examples_per_shard=40, next_sentence=False)
    return shards


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return make_tiny_shards(tmp_path_factory.mktemp("pretrain_data"))


def tiny_flags(shards: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--dataset_path", str(shards), "--output_dir", str(output_dir), "--max_seq_length", "32",
        "--n_layers", "2", "--hidden_size", "32", "--intermediate_size", "64", "--num_ssm", "8",
        "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "8", "--warmup_steps", "3",
        "--learning_rate", "3e-3", "--logging_steps", "1", "--disable_progress_bar", *extra,
    ]


def subprocess_env(tmp_cache: Path) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    env.update(JAX_COMPILATION_CACHE_DIR=str(tmp_cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    return env


def train_losses(output_dir: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["kind"] == "train"]
    assert steps == sorted(set(steps)), "metrics.jsonl must read as one trajectory"
    return {r["step"]: r["loss"] for r in records if r["kind"] == "train"}


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_exactly(shards, tmp_path):
    command = [sys.executable, str(ROOT / "pretrain.py")]
    extra = ("--num_total_train_steps", "30", "--save_steps", "3", "--eval_steps", "15", "--report_to", "none",
             "--dynamic_masking", "--hidden_dropout_prob", "0.1")
    env = subprocess_env(tmp_path / "jax_cache")
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"

    done = subprocess.run(command + tiny_flags(shards, reference, *extra), env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    victim = subprocess.Popen(command + tiny_flags(shards, resumed, *extra), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    checkpoints = resumed / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if checkpoints.is_dir() and any(p.name.isdigit() and int(p.name) >= 6 for p in checkpoints.iterdir()):
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, f"the run ended before it was killed: {victim.stderr.read()[-2000:]}"
    logged_before_kill = max(train_losses(resumed))
    assert logged_before_kill < 30

    again = subprocess.run(command + tiny_flags(shards, resumed, *extra), env=env, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]

    expected, actual = train_losses(reference), train_losses(resumed)
    assert sorted(actual) == list(range(1, 31))
    np.testing.assert_allclose([actual[s] for s in range(1, 31)], [expected[s] for s in range(1, 31)],
                               rtol=0, atol=1e-6)
    assert expected[30] < expected[1]
    evals = [json.loads(l) for l in (resumed / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert [e["step"] for e in evals][-1] == 30 and 0 <= evals[-1]["accuracy"] <= 1
    # tokens seen and training time carry over the kill: the count equals the uninterrupted run's
    records = {folder: [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
               for folder in (reference, resumed)}
    assert records[resumed][-1]["tokens"] == records[reference][-1]["tokens"] > 0
    seconds = [r["train_seconds"] for r in records[resumed]]
    assert seconds == sorted(seconds) and seconds[-1] > 0


# Run by the `trained` fixture; without dropout, so a model's training loss is its loss.
TRAINED = ("--num_total_train_steps", "4", "--save_steps", "2", "--eval_steps", "4", "--ssm_lr_factor", "0.1",
           "--gradient_accumulation_steps", "2", "--schedule_type", "linear", "--hidden_dropout_prob", "0")


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory) -> Path:
    """The output_dir of one finished 4-step run, shared by the tests that read or continue it."""
    out = tmp_path_factory.mktemp("trained")
    assert main(tiny_flags(shards, out, *TRAINED)) == 0
    return out


def test_export_loads_and_resume_checks(shards, trained, capsys):
    from bigs.modeling import FlaxBiGSForMaskedLM, FlaxBiGSForSequenceClassification
    from bigs.tokenizer import BiGSTokenizer

    out = trained
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == ["2", "4"]
    assert any((out / "runs").iterdir())
    model = FlaxBiGSForMaskedLM.from_pretrained(out)
    assert model.config.hidden_size == 32 and model.config.vocab_size == 60
    classifier = FlaxBiGSForSequenceClassification.from_pretrained(out, num_labels=2)
    tokenizer = BiGSTokenizer.from_pretrained(str(out))
    batch = tokenizer(["the cat sat"])
    assert classifier(batch["input_ids"]).logits.shape == (1, 2)
    # Rerunning a finished run restores its last checkpoint and trains no further;
    # rerunning with other settings is refused.
    before = (out / "metrics.jsonl").read_text()
    assert main(tiny_flags(shards, out, *TRAINED)) == 0
    assert (out / "metrics.jsonl").read_text() == before
    assert main(tiny_flags(shards, out, *TRAINED, "--hidden_size", "16")) == 2
    assert "--overwrite_output_dir" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_set_aside_and_the_rerun_finishes(shards, trained, tmp_path):
    """The latest checkpoint of a finished run is damaged: rerunning the same command moves
    it aside (the warning says where), trains the last steps again from the checkpoint
    before with the same numbers, writes that step again and finishes; so does a second rerun."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    losses = train_losses(out)
    latest = out / "checkpoints" / "4" / "state"
    largest = max((p for p in latest.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])

    with pytest.warns(RuntimeWarning, match="checkpoint step 4 cannot be restored") as caught:
        assert main(tiny_flags(shards, out, *TRAINED)) == 0
    assert any(str(out / "checkpoints" / "4.damaged") in str(warning.message) for warning in caught)
    assert sorted(os.listdir(out / "checkpoints")) == ["2", "4", "4.damaged"]
    assert train_losses(out) == pytest.approx(losses, abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)      # no checkpoint is set aside this time
        assert main(tiny_flags(shards, out, *TRAINED)) == 0


def test_tensorboard_gets_only_finite_scalars(trained):
    scalars = read_scalars(trained / "runs")
    assert {"train/loss", "train/lr", "train/tok_per_s", "eval/loss", "eval/accuracy"} <= {s[0] for s in scalars}
    assert [s for s in scalars if not np.isfinite(s[2])] == []


def test_model_name_or_path_starts_from_that_checkpoint(shards, trained, tmp_path):
    """The first step of a run continued from an exported model is taken from its params:
    its loss is that model's loss on the run's first batch."""
    from bigs.data.shards import ShardDataset
    from bigs.modeling import FlaxBiGSForMaskedLM
    from bigs.train.pretrain import make_eval_step, model_inputs

    out = tmp_path / "continued"
    assert main(tiny_flags(shards, out, "--model_name_or_path", str(trained), "--num_total_train_steps", "2",
                           "--eval_steps", "0", "--report_to", "none")) == 0
    first_loss = train_losses(out)[1]

    model = FlaxBiGSForMaskedLM.from_pretrained(trained)
    batch, _ = next(ShardDataset(str(shards), seed=0).iterate(8))
    arrays = model_inputs(batch)
    loss_sum, _, count = jax.jit(make_eval_step(model, batch["masked_lm_positions"].shape[1]))(model.params, arrays)
    assert first_loss == pytest.approx(float(loss_sum) / int(count), rel=1e-5)
    continued = FlaxBiGSForMaskedLM.from_pretrained(out)
    assert continued.config.to_dict() == model.config.to_dict()


def test_bfloat16_trains_with_float32_params(shards, tmp_path):
    from flax import serialization

    out = tmp_path / "bf16"
    assert main(tiny_flags(shards, out, "--dtype", "bfloat16", "--num_total_train_steps", "3", "--eval_steps", "3",
                           "--report_to", "none")) == 0
    losses = train_losses(out)
    assert sorted(losses) == [1, 2, 3] and all(np.isfinite(list(losses.values())))
    evaluation = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert np.isfinite(evaluation[-1]["loss"])
    exported = serialization.msgpack_restore((out / "flax_model.msgpack").read_bytes())
    dtypes = {str(np.asarray(leaf).dtype) for leaf in jax.tree.leaves(exported)}
    assert dtypes == {"float32"}


@pytest.mark.parametrize("flags, message", [
    (["--learning_rate", "-1"], "learning_rate"),
    (["--schedule_type", "cubic"], "schedule_type"),
    (["--mesh", "2by2"], "--mesh"),
    (["--max_seq_length", "16"], "max_seq_length"),
    (["--num_devices", "64"], "num_devices"),
])
def test_bad_flags_exit_2(shards, tmp_path, capsys, flags, message):
    assert main(tiny_flags(shards, tmp_path / "out", *flags)) == 2
    assert message in capsys.readouterr().err


def test_bad_data_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(tiny_flags(tmp_path / "empty", tmp_path / "out")) == 2
    assert "no shards" in capsys.readouterr().err
    assert main(tiny_flags(tmp_path / "missing", tmp_path / "out")) == 2
    assert "does not exist" in capsys.readouterr().err
