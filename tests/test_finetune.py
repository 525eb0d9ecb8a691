"""Fine-tuning: the whole job through the CLI entry, resume, frozen kernels, MNLI heads, padding,
a real GLUE task (MRPC), and TensorBoard scalars that are all finite."""

import contextlib
import json
import math
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from bigs.cli import glue
from bigs.data.batching import Batching, encode, update_order
from bigs.data.demo_task import write_demo_files
from bigs.data.glue import load_user_files
from bigs.modeling import FlaxBiGSForSequenceClassification
from bigs.predict import predict_logits
from bigs.tokenizer import BiGSTokenizer
from bigs.train import finetune
from bigs.train.progress import Progress, read_scalars

# One tiny model shape for every run here, so the jitted model functions are shared.
TINY = ["--hidden_size", "32", "--num_hidden_layers", "2", "--intermediate_size", "64", "--num_ssm", "8",
        "--max_position_embeddings", "64"]
# The shared run: 4 steps an epoch, 8 steps, evaluated (and checkpointed) at 3, 6 and 8.
RUN = ("--max_steps", "8", "--eval_steps", "3")


pytestmark = pytest.mark.usefixtures("compilation_cache")


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    return write_demo_files(str(tmp_path_factory.mktemp("demo")), num_train=64, num_eval=32, num_test=20)


def _argv(files, output_dir, *extra):
    return ["--train_file", files["train"], "--validation_file", files["validation"], "--test_file", files["test"],
            "--tokenizer_name", files["vocab"], "--max_seq_length", "32", "--per_device_train_batch_size", "16",
            "--learning_rate", "3e-3", "--logging_steps", "2", "--disable_tqdm", "--output_dir", str(output_dir),
            *TINY, *extra]


@pytest.fixture(scope="module")
def demo_run(demo_files, tmp_path_factory):
    """The output_dir of one uninterrupted run (RUN), shared by the tests that read it."""
    out = tmp_path_factory.mktemp("demo_run")
    assert glue.main(_argv(demo_files, out, *RUN)) == 0
    return out


def _flat(params):
    return traverse_util.flatten_dict(jax.device_get(params))


def test_end_to_end_writes_model_results_and_predictions(demo_run, capsys):
    out = demo_run
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metric"] == "accuracy" and results["best_step"] in (3, 6, 8)
    assert [entry["step"] for entry in results["history"]] == [3, 6, 8]
    model = FlaxBiGSForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "in_order", 1: "reversed"}
    # the readable log: loss and learning rate as training goes, each evaluation, examples and time
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all({"loss", "learning_rate", "examples", "train_seconds"} <= set(r) for r in train)
    assert [r["step"] for r in records if r["kind"] == "eval"] == [3, 6, 8]
    assert [r["examples"] for r in train] == sorted(r["examples"] for r in train)
    lines = (out / "predict_results.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 21
    assert {line.split("\t")[1] for line in lines[1:]} <= {"reversed", "in_order"}

    from bigs.cli import predict

    assert predict.main(["--model_name_or_path", str(out), "owl open fox close sun", "red close blue open"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and rows[0]["label"] in ("reversed", "in_order")
    assert sum(rows[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)


def test_tensorboard_gets_only_finite_scalars(demo_run):
    scalars = read_scalars(demo_run / "runs")
    tags = {tag for tag, _, _ in scalars}
    assert {"train/loss", "train/lr", "train/ex_per_s", "validation/accuracy"} <= tags
    assert [(tag, step, value) for tag, step, value in scalars if not math.isfinite(value)] == []
    rates = [value for tag, _, value in scalars if tag == "train/ex_per_s"]
    assert len(rates) == 4 and all(rate > 0 for rate in rates)  # logged at steps 2, 4, 6, 8
    # the learning rate a step was taken with: linear decay from 3e-3, 3e-3 * (8 - (s - 1)) / 8
    lrs = {step: value for tag, step, value in scalars if tag == "train/lr"}
    assert lrs == pytest.approx({s: 3e-3 * (9 - s) / 8 for s in (2, 4, 6, 8)})


@pytest.mark.parametrize("argv, message", [
    (["--output_dir", "x", "--no_such_flag"], "unrecognized arguments"),
    (["--output_dir", "x", "--task_name", "sst3", "--data_dir", "."], "unknown GLUE task 'sst3'"),
    (["--output_dir", "x", "--train_file", "/nonexistent/train.csv"], "does not exist"),
    (["--output_dir", "x", "--train_file", "t.csv", "--max_train_samples", "0"], "--max_train_samples=0"),
    (["--output_dir", "x", "--train_file", "t.csv", "--eval_steps", "0"], "--eval_steps=0"),
    (["--output_dir", "x", "--train_file", "t.csv", "--learning_rate", "nan"], "--learning_rate=nan"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) if "flag" in argv[-1] else _no_raise() as _:
        code = glue.main(argv)
        assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_column_exits_2(demo_files, tmp_path, capsys):
    code = glue.main(_argv(demo_files, tmp_path / "o", "--label_column", "stars"))
    assert code == 2
    assert "no label column 'stars'" in capsys.readouterr().err


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _checkpoint_leaves(output_dir, step: int) -> dict:
    """{path: array} of the saved training state (params, optimiser state, rng) at `step`."""
    state = ocp.StandardCheckpointer().restore(str(output_dir / "checkpoints" / str(step) / "state"))
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def _validation_logits(demo_files, output_dir) -> np.ndarray:
    model = FlaxBiGSForSequenceClassification.from_pretrained(str(output_dir))
    data, _ = load_user_files(demo_files["train"], demo_files["validation"])
    encoded = encode(BiGSTokenizer.from_pretrained(str(output_dir)), data["validation"], 32)
    return predict_logits(model, encoded, batching=Batching("longest", 32), pad_id=0, pad_mode="exact")


class Killed(Exception):
    """The process dies here (what a SIGKILL or a crash would do)."""


@contextlib.contextmanager
def dies_in_step(number: int, monkeypatch):
    """Within: a fine-tuning run is killed (Killed) as its step `number` begins."""
    batches = finetune.FinetuneTask.batches

    def dying(self, start_step, position):
        for step, batch in enumerate(batches(self, start_step, position), start=start_step + 1):
            if step == number:
                raise Killed(f"killed in step {number}")
            yield batch

    monkeypatch.setattr(finetune.FinetuneTask, "batches", dying)
    try:
        yield
    finally:
        monkeypatch.setattr(finetune.FinetuneTask, "batches", batches)


def test_resume_continues_where_it_stopped(demo_files, demo_run, tmp_path, monkeypatch, capsys):
    """A run killed during step 7 resumes from its step-6 checkpoint (mid-epoch, one epoch
    crossed) and ends with the uninterrupted run's params, optimiser state and logits."""
    resumed = tmp_path / "resumed"
    with dies_in_step(7, monkeypatch), pytest.raises(Killed):
        glue.main(_argv(demo_files, resumed, *RUN))
    assert sorted(os.listdir(resumed / "checkpoints")) == ["3", "6"]
    assert glue.main(_argv(demo_files, resumed, *RUN)) == 2  # a run is there: needs --resume
    capsys.readouterr()
    assert glue.main(_argv(demo_files, resumed, *RUN, "--resume")) == 0
    assert f"resumed from step 6 of 8 in {resumed / 'checkpoints'}" in capsys.readouterr().err

    after = json.loads((resumed / "eval_results.json").read_text())
    expected = json.loads((demo_run / "eval_results.json").read_text())
    assert [entry["step"] for entry in after["history"]] == [3, 6, 8]
    assert after["history"] == expected["history"] and after["best_step"] == expected["best_step"]
    # the final training state: params, Adam moments and counts, rng
    final, reference = _checkpoint_leaves(resumed, 8), _checkpoint_leaves(demo_run, 8)
    assert final.keys() == reference.keys() and any("mu" in key for key in final)
    for key in reference:
        np.testing.assert_allclose(final[key], reference[key], rtol=0, atol=1e-6, err_msg=key)
    # the exported best model, and what it predicts
    saved = _flat(FlaxBiGSForSequenceClassification.from_pretrained(str(resumed)).params)
    for key, value in _flat(FlaxBiGSForSequenceClassification.from_pretrained(str(demo_run)).params).items():
        np.testing.assert_allclose(saved[key], value, rtol=0, atol=1e-6, err_msg="/".join(key))
    np.testing.assert_allclose(_validation_logits(demo_files, resumed), _validation_logits(demo_files, demo_run),
                               rtol=0, atol=1e-6)


def test_freeze_kernel_leaves_ssm_kernels_unchanged(demo_files, tmp_path):
    out = tmp_path / "frozen"
    assert glue.main(_argv(demo_files, out, "--max_steps", "4", "--freeze_kernel", "--seed", "3")) == 0
    config = glue.config_from_args(glue.build_parser().parse_args(_argv(demo_files, out, "--seed", "3")))
    _, spec = load_user_files(demo_files["train"], demo_files["validation"])
    initial, _ = finetune.load_model(config, spec)
    before = _flat(initial.checkpoint_params())
    after = _flat(FlaxBiGSForSequenceClassification.from_pretrained(str(out)).checkpoint_params())
    frozen = [k for k in before if k[-1] in ("A_re", "A_im", "C", "log_step") or "token_type_embeddings" in k]
    assert frozen
    for key in frozen:
        np.testing.assert_array_equal(before[key], after[key], err_msg="/".join(key))
    assert any(not np.array_equal(before[k], after[k]) for k in before if k not in frozen)


def test_mnli_checkpoint_starts_two_label_and_regression_tasks(demo_files, tmp_path):
    mnli = tmp_path / "mnli"
    config = glue.config_from_args(glue.build_parser().parse_args(_argv(demo_files, mnli)))
    three = finetune.TaskSpec("custom", ("sentence",), ("a", "b", "c"), False, (), (), "accuracy")
    model, tokenizer = finetune.load_model(config, three)
    model.save_pretrained(str(mnli), tokenizer=tokenizer)

    # a 2-label task: backbone kept, head re-initialised to [H, 2]
    out = tmp_path / "two"
    assert glue.main(_argv(demo_files, out, "--model_name_or_path", str(mnli), "--max_steps", "2")) == 0
    two = FlaxBiGSForSequenceClassification.from_pretrained(str(out))
    assert _flat(two.params)[("classifier", "kernel")].shape == (32, 2)

    # a regression task (float targets) from the same 3-label checkpoint
    reg = tmp_path / "reg.csv"
    reg.write_text("sentence,score\n" + "".join(f"red fox and {w} owl,{i * 0.5 + 0.25}\n"
                                                 for i, w in enumerate(["sun", "tree", "fox", "red"] * 8)))
    out = tmp_path / "regression"
    argv = ["--model_name_or_path", str(mnli), "--train_file", str(reg), "--validation_file", str(reg),
            "--max_seq_length", "32", "--max_steps", "2", "--disable_tqdm", "--output_dir", str(out)]
    assert glue.main(argv) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metric"] == "pearson" and "mse" in results["eval"]["validation"]
    assert FlaxBiGSForSequenceClassification.from_pretrained(str(out)).config.num_labels == 1


def test_per_batch_exact_padding_predicts_like_padding_to_max_length(demo_files, tmp_path):
    argv = _argv(demo_files, tmp_path, "--max_seq_length", "64", "--pad_to_multiple_of", "8")
    config = glue.config_from_args(glue.build_parser().parse_args(argv))
    data, spec = load_user_files(demo_files["train"], demo_files["validation"])
    model, tokenizer = finetune.load_model(config, spec)
    encoded = encode(tokenizer, data["validation"], 64)
    per_batch = predict_logits(model, encoded, batching=Batching("longest", 64, pad_to_multiple_of=8), batch_size=16,
                               pad_mode="exact")
    padded = predict_logits(model, encoded, batching=Batching("max_length", 64), batch_size=16, pad_mode="exact")
    np.testing.assert_allclose(per_batch, padded, atol=1e-5)
    np.testing.assert_array_equal(per_batch.argmax(-1), padded.argmax(-1))
    assert not encoded.truncated.any()


def test_encode_counts_what_truncation_cut(demo_files, caplog):
    """`encode` tokenises once and says how many examples lost tokens: the same count as a
    second, untruncated tokenisation gives."""
    from bigs.tokenizer import BiGSTokenizer

    data, _ = load_user_files(demo_files["train"], demo_files["validation"])
    tokenizer = BiGSTokenizer.from_vocab(demo_files["vocab"])
    full = np.array([len(ids) for ids in tokenizer(data["train"].text_a, padding=False, truncation=False,
                                                   return_numpy=False)["input_ids"]])
    limit = int(np.median(full))
    with caplog.at_level("WARNING", logger="bigs"):
        encoded = encode(tokenizer, data["train"], limit, "train examples")
    np.testing.assert_array_equal(encoded.truncated, full > limit)
    assert 0 < (full > limit).sum() < len(full)
    assert (f"{(full > limit).sum()} of {len(full)} train examples are longer than {limit} tokens and were "
            "truncated") in caplog.text
    np.testing.assert_array_equal(encoded.lengths, np.minimum(full, limit))


def test_train_batches_are_deterministic_and_cover_every_example(demo_files, tmp_path):
    data, _ = load_user_files(demo_files["train"])
    from bigs.tokenizer import BiGSTokenizer

    encoded = encode(BiGSTokenizer.from_vocab(demo_files["vocab"]), data["train"], 32)
    first = update_order(encoded.lengths, 16, epoch=1, seed=0, bucket=True)
    again = update_order(encoded.lengths, 16, epoch=1, seed=0, bucket=True)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert sorted(np.concatenate(first).tolist()) == list(range(len(encoded)))


def test_progress_logs_to_tensorboard(tmp_path):
    with Progress(4, str(tmp_path), disable=True) as progress:
        for step in range(1, 5):
            progress.update(step, 8, {"loss": 1.0 / step, "lr": 1e-3} if step % 2 == 0 else None)
        progress.log_eval(4, {"accuracy": 0.5})
    assert progress.rate is not None and progress.rate > 0
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path))


def test_mrpc_from_glue_tsv_files(shared_dir, vocab_file, tmp_path):
    """A real GLUE task end to end: the TSV files, the BERT vocabulary, F1/accuracy, and the
    submission file the GLUE server takes."""
    out = tmp_path / "mrpc"
    argv = ["--task_name", "mrpc", "--data_dir", str(shared_dir / "data" / "glue"), "--tokenizer_name", str(vocab_file),
            "--max_train_samples", "16", "--max_eval_samples", "16", "--max_predict_samples", "8",
            "--max_seq_length", "64", "--per_device_train_batch_size", "8", "--max_steps", "2",
            "--learning_rate", "3e-3", "--disable_tqdm", "--output_dir", str(out), *TINY]
    assert glue.main(argv) == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert results["metric"] == "combined" and results["best_step"] == 2
    validation = results["eval"]["validation"]
    assert {"f1", "accuracy", "combined"} <= validation.keys()
    assert validation["combined"] == pytest.approx((validation["f1"] + validation["accuracy"]) / 2)
    lines = (out / "MRPC.tsv").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 1 + 8
    rows = [line.split("\t") for line in lines[1:]]
    assert [index for index, _ in rows] == [str(i) for i in range(8)]  # the test file's ids
    assert {prediction for _, prediction in rows} <= {"0", "1"}


def test_do_eval_alone_prints_its_metrics(demo_files, demo_run, tmp_path, capsys):
    """Issue 16: `--do_eval` without training printed nothing; it prints each split's metrics,
    the ones it writes to eval_results.json."""
    out = tmp_path / "eval_only"
    argv = ["--model_name_or_path", str(demo_run), "--validation_file", demo_files["validation"],
            "--train_file", demo_files["train"], "--max_seq_length", "32", "--output_dir", str(out), "--do_eval"]
    capsys.readouterr()
    assert glue.main(argv) == 0
    printed = capsys.readouterr().out
    written = json.loads((out / "eval_results.json").read_text())["eval"]["validation"]
    assert f"validation: accuracy {written['accuracy']:.4f}" in printed
    # From a trial: without --max_seq_length the default 128 was refused for this 64-position
    # model; it now takes the model's length, says so, and (these texts are short) agrees.
    default = tmp_path / "eval_default_length"
    assert glue.main([arg for arg in argv if arg not in ("--max_seq_length", "32")][:-3]
                     + ["--output_dir", str(default), "--do_eval"]) == 0
    assert "max_seq_length: 64, the model's max_position_embeddings" in capsys.readouterr().err
    results = json.loads((default / "eval_results.json").read_text())
    assert results["eval"]["validation"] == pytest.approx(written, abs=1e-6)


def test_evaluating_a_finished_run_keeps_its_model_and_training_record(demo_files, demo_run, tmp_path, capsys):
    """From a new-user trial: `--resume --do_eval` on a run trained from random init built a
    new random model, saved it over the trained one and cut eval_results.json down to the
    evaluation (exit 0). It now evaluates the run's own model and keeps the record."""
    import hashlib
    import shutil

    out = tmp_path / "finished"
    shutil.copytree(demo_run, out)
    weights = hashlib.sha256((out / "flax_model.msgpack").read_bytes()).hexdigest()
    before = json.loads((out / "eval_results.json").read_text())
    capsys.readouterr()
    assert glue.main(_argv(demo_files, out, *RUN, "--resume", "--do_eval")) == 0
    captured = capsys.readouterr()
    assert "evaluating the model the run in" in captured.err
    assert hashlib.sha256((out / "flax_model.msgpack").read_bytes()).hexdigest() == weights
    after = json.loads((out / "eval_results.json").read_text())
    assert {key: after[key] for key in ("best_step", "best_metric", "history", "config")} == \
        {key: before[key] for key in ("best_step", "best_metric", "history", "config")}
    assert after["eval"]["validation"] == pytest.approx(before["eval"]["validation"], abs=1e-6)   # the best model
    assert f"validation: accuracy {after['eval']['validation']['accuracy']:.4f}" in captured.out

    assert glue.main(_argv(demo_files, out, *RUN, "--resume", "--do_eval", "--model_name_or_path",
                           str(demo_run))) == 2
    assert "is not the model the run in" in capsys.readouterr().err
    assert glue.main(_argv(demo_files, out, *RUN, "--resume", "--do_eval", "--model_name_or_path", str(out))) == 0

    # From the second trial: another task would have been scored and its record dropped;
    # --overwrite_output_dir without training replaced the trained model with a new one; a
    # finished run without --resume got a hint about tokenizers; a test file alone had no labels.
    assert glue.main(["--task_name", "rte", "--output_dir", str(out), "--resume", "--do_eval"]) == 2
    assert "fine-tuned on custom, not rte" in capsys.readouterr().err
    assert glue.main(_argv(demo_files, out, *RUN, "--overwrite_output_dir", "--do_eval")) == 2
    assert "holds a saved model (flax_model.msgpack, model.safetensors)" in capsys.readouterr().err
    assert glue.main(["--train_file", demo_files["train"], "--validation_file", demo_files["validation"],
                      "--output_dir", str(out), "--do_eval"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert hashlib.sha256((out / "flax_model.msgpack").read_bytes()).hexdigest() == weights
    assert glue.main(["--test_file", demo_files["test"], "--output_dir", str(out), "--resume", "--do_predict"]) == 0
    predicted = (out / "predict_results.tsv").read_text().splitlines()
    assert len(predicted) == 21 and {line.split("\t")[1] for line in predicted[1:]} <= {"in_order", "reversed"}
    assert json.loads((out / "eval_results.json").read_text())["best_step"] == before["best_step"]
    elsewhere = tmp_path / "predictions_only"          # no run there: the model's labels, no model written
    assert glue.main(["--model_name_or_path", str(out), "--test_file", demo_files["test"], "--do_predict",
                      "--output_dir", str(elsewhere)]) == 0
    assert (elsewhere / "predict_results.tsv").read_text() == (out / "predict_results.tsv").read_text()
    assert not (elsewhere / "flax_model.msgpack").exists() and not (elsewhere / "config.json").exists()

    # From the third trial: data of other labels re-initialised the head and scored it; a GLUE
    # run could not predict a test file alone; a link to the run was not the run.
    regression = tmp_path / "regression.csv"
    regression.write_text("sentence,score\nred fox,0.25\nsun owl,1.5\n")
    record = (out / "eval_results.json").read_text()
    for argv in (["--validation_file", str(regression), "--output_dir", str(out), "--resume", "--do_eval"],
                 ["--model_name_or_path", str(out), "--validation_file", str(regression), "--do_eval",
                  "--output_dir", str(tmp_path / "scored")]):
        assert glue.main(argv) == 2
        assert (f"the classifier of {out} predicts 2 classes ['in_order', 'reversed'], but the data's labels are a "
                "regression score") in capsys.readouterr().err
    assert (out / "eval_results.json").read_text() == record and not (tmp_path / "scored").exists()
    (tmp_path / "link").symlink_to(out)
    assert glue.main(_argv(demo_files, out, *RUN, "--resume", "--do_eval", "--model_name_or_path",
                           str(tmp_path / "link"))) == 0
    settings = json.loads((out / "run_settings.json").read_text())
    settings["data"]["task"] = "sst2"                 # as a GLUE run records it
    (out / "run_settings.json").write_text(json.dumps(settings))
    (out / "predict_results.tsv").unlink()
    assert glue.main(["--test_file", demo_files["test"], "--output_dir", str(out), "--resume", "--do_predict"]) == 0
    assert (out / "predict_results.tsv").read_text() == (elsewhere / "predict_results.tsv").read_text()

    pretraining = tmp_path / "pretraining"
    pretraining.mkdir()
    (pretraining / "run_settings.json").write_text(json.dumps({"command": "pretrain"}))
    assert glue.main(_argv(demo_files, pretraining, "--resume", "--do_eval")) == 2
    assert "holds a `bigs pretrain` run, not a fine-tuning run" in capsys.readouterr().err
    early = tmp_path / "early"
    early.mkdir()
    (early / "run_settings.json").write_text(json.dumps({"command": "glue"}))
    assert glue.main(_argv(demo_files, early, "--resume", "--do_eval")) == 2
    assert "has saved no model yet" in capsys.readouterr().err
    assert sorted(p.name for p in early.iterdir()) == ["run_settings.json"]
