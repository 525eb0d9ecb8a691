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
