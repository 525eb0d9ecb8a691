"""The `bigs` commands parse their flags and fail with one message and exit code 2."""

import pytest

from bigs.cli import build_shards, demo, glue, main, predict

PUBLISHED = ("--model_name_or_path JunxiongWang/BiGS_512_MNLI --task_name mrpc --max_seq_length 512 "
             "--learning_rate 2e-5 --num_train_epochs 3 --per_device_train_batch_size 2 --logging_steps 100 "
             "--eval_steps 500 --weight_decay 0.01 --output_dir BiGS_mrpc/").split()


def test_published_command_parses_as_written():
    config = glue.config_from_args(glue.build_parser().parse_args(PUBLISHED))
    assert (config.task_name, config.max_seq_length, config.learning_rate, config.eval_steps) == ("mrpc", 512, 2e-5, 500)
    assert (config.batching, config.pad_mode) == ("longest", "exact") and config.weight_decay == 0.01


@pytest.mark.parametrize("padding, batching, pad_mode", [("exact", "longest", "exact"),
                                                         ("max_length", "max_length", "exact"),
                                                         ("reference", "max_length", "reference")])
def test_published_padding_flag_is_batching_and_pad_mode(padding, batching, pad_mode):
    config = glue.config_from_args(glue.build_parser().parse_args([*PUBLISHED, "--padding", padding]))
    assert (config.batching, config.pad_mode) == (batching, pad_mode)


def test_padding_with_batching_is_refused(capsys):
    argv = [*PUBLISHED, "--padding", "exact", "--batching", "max_length"]
    assert glue.main(argv) == 2
    assert "give one or the other" in capsys.readouterr().err


def test_pretrain_py_flags_are_aliases_of_the_shared_names():
    from bigs.cli import pretrain

    argv = ["--dataset_path", "d", "--output_dir", "o", "--num_total_train_steps", "7", "--keep_checkpoints", "5",
            "--disable_progress_bar", "--mesh", "2x1"]
    args = pretrain.args_from_namespace(pretrain.build_parser().parse_args(argv))
    assert (args.max_steps, args.save_total_limit, args.disable_tqdm) == (7, 5, True)
    assert (args.num_devices, args.fsdp, args.resume) == (2, 1, None)


@pytest.mark.parametrize("module", [glue, predict, demo, build_shards])
def test_unknown_flag_exits_2(module, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--no_such_flag"])
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_dispatcher_lists_commands(capsys):
    assert main.main([]) == 0
    assert "glue" in capsys.readouterr().out
    assert main.main(["nope"]) == 2


def test_predict_missing_checkpoint_exits_2(tmp_path, capsys):
    assert predict.main(["--model_name_or_path", str(tmp_path), "some text"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from bigs.train import finetune

    def interrupted(config):
        raise KeyboardInterrupt
    monkeypatch.setattr(finetune, "run", interrupted)
    assert glue.main(PUBLISHED) == 130
    err = capsys.readouterr().err
    assert err.strip() == "bigs glue: interrupted; add --resume to the same command to continue from the latest checkpoint"


def test_orbax_s_abandoned_reads_are_not_printed_and_the_rest_is():
    from types import SimpleNamespace

    from bigs.cli.common import quiet_unraisables

    shown = []
    orbax_read = SimpleNamespace(object=SimpleNamespace(cr_code=SimpleNamespace(
        co_filename="/site-packages/orbax/checkpoint/_src/serialization/serialization.py")), exc_value=None)
    late_callback = SimpleNamespace(object=None, exc_value=RuntimeError("Event loop is closed"))
    other = SimpleNamespace(object=SimpleNamespace(cr_code=SimpleNamespace(co_filename="/work/mine.py")),
                            exc_value=None)
    unrelated = SimpleNamespace(object=None, exc_value=RuntimeError("something else"))
    ctrl_c_in_a_gc_callback = SimpleNamespace(object=print, exc_value=KeyboardInterrupt())
    for unraisable in (orbax_read, late_callback, other, unrelated, ctrl_c_in_a_gc_callback):
        quiet_unraisables(unraisable, default=shown.append)
    assert shown == [other, unrelated]


def test_orbax_s_abandoned_tasks_are_not_logged_and_other_asyncio_errors_are():
    import logging

    from bigs.cli.common import _keep_unless_abandoned_checkpoint_read

    def record(message):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)

    orbax = record("Task exception was never retrieved\nfuture: <Task finished coro=<async_deserialize() done, "
                   "defined at /venv/site-packages/orbax/checkpoint/_src/serialization/serialization.py:394>>")
    mine = record("Task exception was never retrieved\nfuture: <Task finished coro=<fetch() defined at /me/x.py:3>>")
    assert not _keep_unless_abandoned_checkpoint_read(orbax)
    assert _keep_unless_abandoned_checkpoint_read(mine)
    assert _keep_unless_abandoned_checkpoint_read(record("Unclosed client session"))


def test_a_missing_config_file_is_one_line(tmp_path, capsys):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"]) + "\n")
    train = tmp_path / "t.csv"
    train.write_text("sentence,label\na,0\na,1\n")
    argv = ["--output_dir", str(tmp_path / "o"), "--train_file", str(train)]
    assert glue.main([*argv, "--tokenizer_name", str(vocab), "--config_name", str(tmp_path / "nope.json")]) == 2
    err = capsys.readouterr().err
    assert "nope.json' cannot be read" in err and "Traceback" not in err
    assert glue.main([*argv, "--tokenizer_name", str(tmp_path / "missing" / "vocab.txt")]) == 2
    assert "--tokenizer_name" in capsys.readouterr().err


def test_predict_refuses_a_model_without_a_trained_head(tmp_path, capsys):
    from bigs import BiGSConfig, FlaxBiGSForMaskedLM
    from bigs.tokenizer import BiGSTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    config = BiGSConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, intermediate_size=32, num_ssm=4,
                        max_position_embeddings=16)
    FlaxBiGSForMaskedLM(config).save_pretrained(tmp_path / "mlm", tokenizer=BiGSTokenizer.from_vocab(str(vocab)))
    assert predict.main(["--model_name_or_path", str(tmp_path / "mlm"), "hello world"]) == 2
    assert "no trained classification head" in capsys.readouterr().err


def test_warnings_print_as_one_line():
    from bigs.cli.common import one_line_warning

    line = one_line_warning("'/d/old.txt' is not UTF-8; read it as Windows-1252", UnicodeWarning, "/x/text.py", 61)
    assert line == "WARNING UnicodeWarning: '/d/old.txt' is not UTF-8; read it as Windows-1252\n"


def test_demo_replaces_its_own_run_and_nothing_else(tmp_path, capsys):
    import json

    out = tmp_path / "bigs_demo"
    argv = ["--output_dir", str(out), "--max_steps", "1", "--disable_tqdm"]
    assert demo.main(argv) == 0 and demo.main(argv) == 0          # the README command, run twice
    assert json.loads((out / "run_settings.json").read_text())["command"] == "demo"
    assert "order dev accuracy" in capsys.readouterr().out
    # Another command's run and the user's own files are refused, untouched.
    run = tmp_path / "pretraining"
    (run / "checkpoints" / "1000").mkdir(parents=True)
    (run / "run_settings.json").write_text(json.dumps({"command": "pretrain"}))
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "notes.txt").write_text("keep me\n")
    own_data = tmp_path / "own_data"          # the demo's file names, the user's content
    (own_data / "data").mkdir(parents=True)
    (own_data / "data" / "train.csv").write_text("sentence,label\nmy precious data,1\n")
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "predict_results.tsv").write_text("index\tprediction\n")
    for folder, named in ((run, "run_settings.json, checkpoints"), (mine, "data"), (own_data, "data"),
                          (predictions, "predict_results.tsv")):
        before = sorted(p for p in folder.rglob("*"))
        assert demo.main(["--output_dir", str(folder), "--max_steps", "1"]) == 2
        assert f"holds files the demo did not make ({named})" in capsys.readouterr().err
        assert sorted(p for p in folder.rglob("*")) == before


def test_a_refused_demo_writes_nothing_and_its_own_data_never_blocks_it(tmp_path, capsys):
    """From a new-user trial: `bigs demo --num_train_epochs 0` was refused after writing the
    task's data, and the next demo then refused that data as the user's (its CSV lines end in
    CRLF, and the check compared decoded text)."""
    from bigs.data.demo_task import write_demo_files

    out = tmp_path / "d"
    assert demo.main(["--output_dir", str(out), "--num_train_epochs", "0"]) == 2
    assert "--num_train_epochs=0.0" in capsys.readouterr().err and not out.exists()
    write_demo_files(str(out / "data"))            # what a demo stopped after writing its data leaves
    assert demo.main(["--output_dir", str(out), "--max_steps", "1", "--disable_tqdm"]) == 0


def test_predict_into_a_closed_pipe_ends_quietly(tmp_path):
    import subprocess
    import sys

    from bigs import BiGSConfig, FlaxBiGSForSequenceClassification
    from bigs.tokenizer import BiGSTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]) + "\n")
    config = BiGSConfig(vocab_size=7, hidden_size=16, num_hidden_layers=1, intermediate_size=32, num_ssm=4,
                        max_position_embeddings=16, num_labels=2)
    FlaxBiGSForSequenceClassification(config).save_pretrained(tmp_path / "cls",
                                                               tokenizer=BiGSTokenizer.from_vocab(str(vocab)))
    texts = tmp_path / "texts.txt"
    texts.write_text("hello world\n" * 2000)
    command = [sys.executable, "-c", "import sys; from bigs.cli.predict import main; sys.exit(main())",
               "--model_name_or_path", str(tmp_path / "cls"), "--input_file", str(texts)]
    reader = subprocess.Popen(["head", "-1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    writer = subprocess.run(command, stdout=reader.stdin, stderr=subprocess.PIPE, text=True, timeout=120)
    reader.stdin.close()
    assert reader.stdout.read().count(b"\n") == 1
    assert writer.returncode == 141 and "Traceback" not in writer.stderr and "Broken pipe" not in writer.stderr


def test_ctrl_c_while_a_command_imports_or_builds_shards_is_one_line(monkeypatch, capsys, tmp_path):
    from bigs.cli import common

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(common, "end_process", lambda code: code)     # the real one ends the process
    monkeypatch.setattr(main, "_entry", ctrl_c)
    assert main.run_program("predict", ["x"], prog="predict.py") == 130
    assert capsys.readouterr().err == "predict.py: interrupted; nothing was written; run the command again\n"
    monkeypatch.setattr(build_shards, "build_shards", ctrl_c)
    (tmp_path / "a.txt").write_text("some text\n")
    argv = ["--input", str(tmp_path / "a.txt"), "--output_dir", str(tmp_path / "out"), "--vocab_file", "v.txt"]
    assert build_shards.main(argv) == 130
    assert capsys.readouterr().err.startswith("bigs build-shards: interrupted; run it again with --overwrite")


def _tiny_classifier(tmp_path, words=("hello", "world", "café", "long")):
    from bigs import BiGSConfig, FlaxBiGSForSequenceClassification
    from bigs.tokenizer import BiGSTokenizer

    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    config = BiGSConfig(vocab_size=5 + len(words), hidden_size=16, num_hidden_layers=1, intermediate_size=32,
                        num_ssm=4, max_position_embeddings=16, num_labels=2)
    FlaxBiGSForSequenceClassification(config).save_pretrained(tmp_path / "cls",
                                                               tokenizer=BiGSTokenizer.from_vocab(str(vocab)))
    return tmp_path / "cls"


def test_predict_reads_stdin_and_files_and_writes_jsonl_or_tsv(tmp_path, capsys, monkeypatch):
    import io
    import json

    model = str(_tiny_classifier(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("hello café\n\nworld\thello\n"))
    assert predict.main(["--model_name_or_path", model, "--input_file", "-"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["id"] for row in rows] == [0, 2]                          # line numbers; blank lines skipped
    assert rows[0]["text"] == ["hello café", ""] and rows[1]["text"] == ["world", "hello"]   # TAB: a pair

    assert predict.main(["--model_name_or_path", model, "hello café"]) == 0
    out = capsys.readouterr().out
    assert "café" in out and "\\u00e9" not in out and '"id"' not in out   # non-ASCII kept as it is

    table = tmp_path / "in.csv"
    table.write_text("idx,sentence\n7,hello world\n9,world\n")
    tsv = tmp_path / "out.tsv"
    assert predict.main(["--model_name_or_path", model, "--input_file", str(table), "--output_file", str(tsv)]) == 0
    lines = tsv.read_text().splitlines()
    assert lines[0] == "id\ttext\tlabel\tp_LABEL_0\tp_LABEL_1"
    assert [line.split("\t")[0] for line in lines[1:]] == ["7", "9"]
    assert predict.main(["--model_name_or_path", model, "--input_file", str(table), "--output_file", str(tsv)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err

    long_text = " ".join(["long"] * 40)
    assert predict.main(["--model_name_or_path", model, long_text, "hello"]) == 0
    assert "1 of 2 texts are longer than 16 tokens and were truncated" in capsys.readouterr().err


def test_predict_refuses_a_tokenizer_larger_than_the_model(tmp_path, capsys):
    from bigs.tokenizer import BiGSTokenizer

    model = _tiny_classifier(tmp_path)
    bigger = tmp_path / "big_vocab.txt"
    bigger.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30)]) + "\n")
    BiGSTokenizer.from_vocab(str(bigger)).save_pretrained(model)
    assert predict.main(["--model_name_or_path", str(model), "w3 w29"]) == 2
    err = capsys.readouterr().err
    assert "the tokenizer has 35 tokens but the model's vocab_size is 9" in err and "Traceback" not in err


def test_version_and_command_list(capsys):
    import bigs

    assert main.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"bigs {bigs.__version__}"
    assert main.main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("convert", "embed", "export-onnx", "predict"))


def test_embed_refuses_bad_outputs(tmp_path, capsys):
    model = _tiny_classifier(tmp_path)
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\n")
    assert main.main(["embed", "--model_name_or_path", str(model), "--input", str(lines),
                      "--output", str(tmp_path / "v.csv")]) == 2
    assert "must end in .npy or .jsonl" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main.main(["embed", "--model_name_or_path", str(model), "--input", str(empty),
                      "--output", str(tmp_path / "v.npy")]) == 2
    assert "holds no lines" in capsys.readouterr().err
    lines.write_text("hello\n" + " ".join(["long"] * 40) + "\n" + " ".join(["long"] * 14) + "\n")
    assert main.main(["embed", "--model_name_or_path", str(model), "--input", str(lines),
                      "--output", str(tmp_path / "v.npy"), "--disable_progress_bar"]) == 0
    assert "1 of 3 texts are longer than 16 tokens and were truncated" in capsys.readouterr().err
    assert main.main(["embed", "--model_name_or_path", str(model), "--input", str(lines),
                      "--output", str(tmp_path / "w.npy"), "--batch_size", "-1"]) == 2
    assert "--batch_size=-1; expected a positive integer" in capsys.readouterr().err


def test_outputs_are_checked_before_any_work_and_stdin_is_decoded_like_files(tmp_path, capsys, monkeypatch):
    """From a new-user trial: an output whose folder is a file, an output that is the input,
    and non-UTF-8 stdin."""
    import io
    import json

    model = str(_tiny_classifier(tmp_path))
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\n")
    for argv in (["embed", "--model_name_or_path", model, "--input", str(lines), "--output", str(lines / "x.npy")],
                 ["predict", "--model_name_or_path", model, "--input_file", str(lines),
                  "--output_file", str(lines / "x.tsv")]):
        assert main.main(argv) == 2
        err = capsys.readouterr().err
        assert "is a file" in err and "Traceback" not in err
    same = tmp_path / "same.jsonl"
    same.write_text("hello\n")
    assert main.main(["embed", "--model_name_or_path", model, "--input", str(same), "--output", str(same),
                      "--overwrite"]) == 2
    assert "is the input file" in capsys.readouterr().err and same.read_text() == "hello\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("café hello\n".encode("cp1252"))))
    with pytest.warns(UnicodeWarning, match="'-' is not UTF-8; read it as Windows-1252"):
        assert predict.main(["--model_name_or_path", model, "--input_file", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "café hello"


def test_glue_refuses_a_tokenizer_larger_than_the_model(tmp_path, capsys):
    """Issue 16: a 30,522-word tokenizer on a 19-word model once trained on NaN with exit 0."""
    model = _tiny_classifier(tmp_path)
    bigger = tmp_path / "big_vocab.txt"
    bigger.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30)]) + "\n")
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\nw1 w2,0\nw3 w29,1\n")
    out = tmp_path / "out"
    assert glue.main(["--model_name_or_path", str(model), "--tokenizer_name", str(bigger), "--train_file", str(train),
                      "--output_dir", str(out), "--max_seq_length", "16", "--max_steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "the tokenizer has 35 tokens but the model's vocab_size is 9" in err and "Traceback" not in err
    assert not out.exists()


def _parsers():
    """(name, parser) of every command, the subcommands of `bigs plot` included."""
    import argparse
    import importlib

    from bigs.cli.main import COMMANDS

    for name, (module, _) in COMMANDS.items():
        parser = importlib.import_module(module).build_parser()
        yield name, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                yield from ((f"{name} {sub}", subparser) for sub, subparser in action.choices.items())


def test_every_flag_of_every_command_has_a_help_line():
    import argparse

    missing = [f"{name} {action.option_strings or action.dest}" for name, parser in _parsers()
               for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help]
    assert missing == []


@pytest.mark.parametrize("command, argv, dest, value", [
    ("glue", ["--disable_progress_bar"], "disable_tqdm", True),
    ("glue", ["--keep_checkpoints", "2"], "save_total_limit", 2),
    ("glue", ["--overwrite"], "overwrite_output_dir", True),
    ("glue", ["--n_layers", "3"], "num_hidden_layers", 3),
    ("pretrain", ["--num_hidden_layers", "3"], "n_layers", 3),
    ("pretrain", ["--overwrite"], "overwrite_output_dir", True),
    ("demo", ["--disable_progress_bar", "--overwrite"], "disable_tqdm", True),
    ("embed", ["--disable_progress_bar", "--overwrite_output_dir"], "overwrite", True),
    ("predict", ["--overwrite_output_dir"], "overwrite", True),
    ("export-onnx", ["--overwrite_output_dir"], "overwrite", True),
    ("convert", ["--overwrite_output_dir"], "overwrite", True),
    ("build-shards", ["--overwrite_output_dir"], "overwrite", True),
])
def test_one_idea_one_flag_with_the_other_spelling_as_alias(command, argv, dest, value):
    """Issue 16: progress bar, checkpoints kept, layer count and overwrite are spelled alike in
    every command, each also under its other known name."""
    parsers = dict(_parsers())
    required = {"glue": ["--output_dir", "o"], "pretrain": ["--output_dir", "o", "--dataset_path", "d"],
                "demo": [], "embed": ["--model_name_or_path", "m", "--input", "i", "--output", "o.npy"],
                "predict": ["--model_name_or_path", "m"], "export-onnx": ["--model_name_or_path", "m", "--output", "o"],
                "convert": ["a", "b"], "build-shards": ["--input", "x", "--output_dir", "o", "--vocab_file", "v"]}
    parsed = parsers[command].parse_args(required[command] + argv)
    assert getattr(parsed, dest) == value


def test_plot_and_every_command_s_help_do_not_import_jax():
    import subprocess
    import sys

    code = ("import sys\nfrom bigs.cli.main import main\n"
            "for name in ('plot', 'pretrain', 'glue', 'predict', 'embed', 'build-shards', 'convert'):\n"
            "    try:\n        main([name, '--help'])\n    except SystemExit:\n        pass\n"
            "assert 'jax' not in sys.modules, 'jax imported'\nprint('OK')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-2000:]


def test_pretrain_refuses_shards_whose_tokenizer_is_larger_than_the_model(tmp_path, capsys):
    """Issue 16: the tokenizer of the shards (data_info.json) against --vocab_size or a
    checkpoint's, naming both sizes and where each comes from; nothing is written."""
    from test_pretrain import make_tiny_shards, tiny_flags

    from bigs.cli import pretrain

    shards = make_tiny_shards(tmp_path / "data")                 # a 60-token vocabulary
    out = tmp_path / "out"
    assert pretrain.main(tiny_flags(shards, out, "--vocab_size", "40", "--max_steps", "1")) == 2
    err = capsys.readouterr().err
    assert "the shards' tokenizer has 60 tokens" in err and "the model's vocabulary has 40 (--vocab_size)" in err
    assert not out.exists()
    # a checkpoint of another size: --model_name_or_path with size flags that disagree is refused
    from bigs.config import BiGSConfig
    from bigs.modeling import FlaxBiGSForMaskedLM

    config = BiGSConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, intermediate_size=64, num_ssm=8,
                        max_position_embeddings=32)
    FlaxBiGSForMaskedLM(config, seed=0).save_pretrained(tmp_path / "ckpt")
    assert pretrain.main(tiny_flags(shards, out, "--model_name_or_path", str(tmp_path / "ckpt"), "--hidden_size",
                                    "64", "--n_layers", "2", "--max_steps", "1")) == 2
    err = capsys.readouterr().err
    assert "--hidden_size=64 (the checkpoint has hidden_size=32)" in err and "--n_layers" not in err
    assert not out.exists()
    small = BiGSConfig.from_dict({**config.to_dict(), "vocab_size": 30})
    FlaxBiGSForMaskedLM(small, seed=0).save_pretrained(tmp_path / "small_vocab")
    assert pretrain.main(["--dataset_path", str(shards), "--output_dir", str(out), "--model_name_or_path",
                          str(tmp_path / "small_vocab"), "--max_steps", "1", "--max_seq_length", "32"]) == 2
    assert f"the model's vocabulary has 30 (config.json of {tmp_path / 'small_vocab'})" in capsys.readouterr().err


def test_a_missing_dependency_is_one_line_naming_the_package(tmp_path):
    """Issue 16: `bigs predict` without jax installed ended in a ModuleNotFoundError traceback."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['jax'] = None\nfrom bigs.cli.main import main\n"
            f"sys.exit(main(['predict', '--model_name_or_path', {str(tmp_path)!r}, 'a text']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "bigs predict: error: the Python package 'jax' is missing; install bigs with its dependencies: "
        "pip install -e . (PyTorch parts: pip install -e \".[torch]\", plots: \".[plot]\")"]


def test_damaged_files_in_a_model_or_run_folder_are_one_line(tmp_path, capsys):
    """From a new-user trial: a corrupt tokenizer.json gave the tokenizers library's traceback
    in predict, embed and glue, and a corrupt config.json one in export-onnx. Every command
    that reads such a folder now names the file, exit 2."""
    import shutil

    model = _tiny_classifier(tmp_path)
    lines = tmp_path / "lines.txt"
    lines.write_text("hello\n")
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\nhello,0\nworld,1\n")
    bad_tokenizer = tmp_path / "bad_tokenizer"
    shutil.copytree(model, bad_tokenizer)
    (bad_tokenizer / "tokenizer.json").write_text("{not json")
    for argv in (["predict", "--model_name_or_path", str(bad_tokenizer), "hello"],
                 ["embed", "--model_name_or_path", str(bad_tokenizer), "--input", str(lines),
                  "--output", str(tmp_path / "v.npy")],
                 ["glue", "--model_name_or_path", str(bad_tokenizer), "--train_file", str(train),
                  "--output_dir", str(tmp_path / "run"), "--max_steps", "1", "--max_seq_length", "16"]):
        assert main.main(argv) == 2, argv[0]
        err = capsys.readouterr().err
        assert "tokenizer.json' is not a tokenizer file the tokenizers library can read" in err, argv[0]
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "v.npy").exists() and not (tmp_path / "run").exists()

    bad_config = tmp_path / "bad_config"
    shutil.copytree(model, bad_config)
    (bad_config / "config.json").write_bytes(b"\xff{not json")
    pytest.importorskip("onnxscript")
    assert main.main(["export-onnx", "--model_name_or_path", str(bad_config), "--output",
                      str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "config.json' is not valid JSON" in err and "Traceback" not in err


def test_plot_names_a_damaged_settings_or_results_file(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1, "loss": 2.0}\n')
    (run / "run_settings.json").write_text("{torn")
    assert main.main(["plot", "curves", str(run), "--output", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "run_settings.json' is not valid JSON" in err and "Traceback" not in err
    (run / "run_settings.json").write_text('{"command": "glue"}')
    (run / "eval_results.json").write_text('["metric"]')
    assert main.main(["plot", "curves", str(run), "--output", str(tmp_path / "c.png")]) == 2
    assert "eval_results.json' holds a JSON list, not an object" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["demo", "glue", "predict", "pretrain", "build-shards", "convert", "embed",
                                     "export-onnx", "plot"])
def test_a_bad_flag_or_value_is_one_line(command, capsys):
    """From a new-user trial: `bigs demo --seed abc` printed argparse's whole usage block."""
    from bigs.cli.main import COMMANDS

    assert command in COMMANDS
    for argv in ([command, "--no_such_flag"], [command, "--seed", "abc"] if command in ("demo", "glue") else None):
        if argv is None:
            continue
        try:
            status = main.main(argv)
        except SystemExit as stop:            # argparse exits; some commands turn that into a status
            status = stop.code
        assert status == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"bigs {command}" in err and "error:" in err, err
        assert "--help` lists the flags" in err


def test_an_unknown_command_is_one_line(capsys):
    assert main.main(["nosuchcmd"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bigs: error: unknown command 'nosuchcmd'; expected one of demo, glue" in err
