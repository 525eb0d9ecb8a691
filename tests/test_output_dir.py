"""Resuming continues the same run or refuses (case C13), leaving every file as it was; what
may change on resume changes no number."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bigs.cli import glue
from bigs.train.output_dir import SETTINGS, first_difference

pytestmark = pytest.mark.usefixtures("compilation_cache")


def tiny_flags(vocab_file) -> list[str]:
    """The `TINY` flags of shared/cases/README.md."""
    return ["--tokenizer_name", str(vocab_file), "--hidden_size", "32", "--num_hidden_layers", "1",
            "--intermediate_size", "64", "--num_ssm", "8", "--max_position_embeddings", "64", "--max_seq_length", "64"]


def c13_argv(shared_dir, vocab_file, out, *extra) -> list[str]:
    cases = shared_dir / "cases" / "C13"
    return [*tiny_flags(vocab_file), "--train_file", str(cases / "train.csv"), "--validation_file",
            str(cases / "dev.csv"), "--output_dir", str(out), "--max_steps", "4", "--eval_steps", "2",
            "--per_device_train_batch_size", "2", "--disable_tqdm", *extra]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def c13_run(shared_dir, vocab_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("c13") / "out"
    assert glue.main(c13_argv(shared_dir, vocab_file, out)) == 0
    return out


@pytest.mark.parametrize("extra, named", [
    (["--hidden_size", "48", "--max_steps", "6"], "model.hidden_size was 32, now 48"),
    (["--seed", "7"], "seed was 42, now 7"),
    (["--per_device_train_batch_size", "4"], "per_device_train_batch_size was 2, now 4"),
    (["--gradient_accumulation_steps", "2"], "gradient_accumulation_steps was 1, now 2"),
    (["--max_steps", "6"], "max_steps was 4, now 6"),
    (["--learning_rate", "1e-3"], "training.learning_rate was 2e-05, now 0.001"),
])
def test_resuming_with_other_settings_is_refused_and_touches_nothing(shared_dir, vocab_file, c13_run, capsys,
                                                                      extra, named):
    """Case C13 and its kind: exit 2 before any training, naming the first difference, with
    every file in output_dir byte for byte as it was."""
    before = snapshot(c13_run)
    assert glue.main(c13_argv(shared_dir, vocab_file, c13_run, "--resume", *extra)) == 2
    err = capsys.readouterr().err
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(c13_run) == before


def test_other_training_data_is_another_run(shared_dir, vocab_file, c13_run, tmp_path, capsys):
    moved = tmp_path / "train.csv"   # the same rows elsewhere: the same run; one row changed: another
    moved.write_bytes((shared_dir / "cases" / "C13" / "train.csv").read_bytes())
    argv = c13_argv(shared_dir, vocab_file, c13_run, "--resume")
    argv[argv.index("--train_file") + 1] = str(moved)
    before = snapshot(c13_run)
    assert glue.main(argv) == 0          # finished already: nothing left to train
    renamed = tmp_path / "my copy.csv"   # the same rows under another name: the same run too
    renamed.write_bytes(moved.read_bytes())
    assert glue.main([*argv[:argv.index("--train_file") + 1], str(renamed), *argv[argv.index("--train_file") + 2:]]) == 0
    moved.write_bytes(moved.read_bytes().replace(b"100,light", b"100,night"))
    assert glue.main(argv) == 2
    assert "data.train was 'sha256 " in capsys.readouterr().err
    assert {name: digest for name, digest in snapshot(c13_run).items() if "checkpoints" in name} == \
        {name: digest for name, digest in before.items() if "checkpoints" in name}


def test_a_checkpoint_that_does_not_fit_is_another_run_not_damage(shared_dir, vocab_file, c13_run, tmp_path, capsys):
    """Without run_settings.json (a run of an earlier version), the checkpoint's own shapes
    decide: a model of another size is refused, and no checkpoint is set aside."""
    import shutil

    out = tmp_path / "legacy"
    shutil.copytree(c13_run, out)
    (out / SETTINGS).unlink()
    before = snapshot(out)
    assert glue.main(c13_argv(shared_dir, vocab_file, out, "--resume", "--hidden_size", "48")) == 2
    assert "checkpoints/4 holds params/" in capsys.readouterr().err
    assert snapshot(out) == before


def test_what_may_change_on_resume_changes_no_number(shared_dir, vocab_file, c13_run, tmp_path, monkeypatch):
    """A run killed in step 3 resumes with another logging cadence, checkpoint limit and
    evaluation batch size, and ends with the uninterrupted run's training state: no example
    of the interrupted epoch is skipped or repeated."""
    from test_finetune import Killed, _checkpoint_leaves, dies_in_step

    out = tmp_path / "out"
    with dies_in_step(3, monkeypatch), pytest.raises(Killed):
        glue.main(c13_argv(shared_dir, vocab_file, out))
    assert glue.main(c13_argv(shared_dir, vocab_file, out, "--resume", "--logging_steps", "1",
                              "--save_total_limit", "5", "--per_device_eval_batch_size", "3")) == 0
    final, reference = _checkpoint_leaves(out, 4), _checkpoint_leaves(c13_run, 4)
    for key in reference:
        np.testing.assert_allclose(final[key], reference[key], rtol=0, atol=1e-6, err_msg=key)


def test_first_difference_follows_nested_settings_and_skips_what_may_change():
    saved = {"model": {"hidden_size": 32, "num_ssm": 8}, "seed": 1, "logging_steps": 10}
    assert first_difference(saved, {"model": {"hidden_size": 32, "num_ssm": 8}, "seed": 1, "logging_steps": 5}) is None
    assert first_difference(saved, {"model": {"hidden_size": 32, "num_ssm": 4}, "seed": 2}) == "model.num_ssm was 8, now 4"
    assert first_difference(saved, {"model": saved["model"]}) == "seed was 1, now '<absent>'"


def test_a_folder_with_the_user_s_own_files_and_no_run_is_not_written_over(shared_dir, vocab_file, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text("{\"mine\": true}\n")
    (out / "notes.txt").write_text("keep me\n")
    assert glue.main(c13_argv(shared_dir, vocab_file, out)) == 2
    assert "holds files this command would replace (config.json) and no run" in capsys.readouterr().err
    assert (out / "config.json").read_text() == "{\"mine\": true}\n"


def test_an_output_dir_that_cannot_be_made_is_one_line(shared_dir, vocab_file, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert glue.main(c13_argv(shared_dir, vocab_file, tmp_path / "afile" / "out")) == 2
    err = capsys.readouterr().err
    assert "cannot be created" in err and "is a file" in err and err.count("\n") == 1


def test_resume_with_nothing_to_resume_is_refused(shared_dir, vocab_file, tmp_path, capsys):
    assert glue.main(c13_argv(shared_dir, vocab_file, tmp_path / "typo", "--resume")) == 2
    assert "holds no run to continue" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


def test_another_command_s_run_is_not_offered_a_resume(shared_dir, vocab_file, c13_run, tmp_path, capsys):
    import json
    import shutil

    other = tmp_path / "pretrained"
    shutil.copytree(c13_run, other)
    settings = json.loads((other / SETTINGS).read_text())
    (other / SETTINGS).write_text(json.dumps({**settings, "command": "pretrain"}))
    before = snapshot(other)
    for extra in ([], ["--resume"]):
        assert glue.main(c13_argv(shared_dir, vocab_file, other, *extra)) == 2
        err = capsys.readouterr().err
        assert "holds a `bigs pretrain` run" in err and "pass --resume" not in err
    assert snapshot(other) == before


def test_a_folder_that_cannot_be_made_is_found_before_any_work(tmp_path):
    from bigs.errors import ConfigError
    from bigs.files import check_writable_folder

    check_writable_folder(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()                 # made to check, and removed again
    if Path("/proc/self").is_dir():                      # Linux: no folder can be made in /proc
        with pytest.raises(ConfigError, match="cannot be created"):
            check_writable_folder("/proc/bigs_out")


@pytest.mark.parametrize("own", ["eval_results.json", "metrics.jsonl", "runs"])
def test_a_run_s_file_names_without_a_run_are_the_user_s(shared_dir, vocab_file, tmp_path, capsys, own):
    """Only run_settings.json or checkpoints/ mark a run; a user's eval_results.json,
    metrics.jsonl or runs/ is neither continued (--resume) nor written over."""
    out = tmp_path / "mine"
    out.mkdir()
    if own == "runs":
        (out / own).mkdir()
    else:
        (out / own).write_text("{}\n")
    before = snapshot(out)
    for extra, message in ((["--resume"], "holds no run to continue"), ([], "holds files this command would replace")):
        assert glue.main(c13_argv(shared_dir, vocab_file, out, *extra)) == 2
        assert message in capsys.readouterr().err
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == [own]


def test_only_a_constant_schedule_lets_max_steps_grow():
    from bigs.train.output_dir import extended

    def settings(steps, schedule="constant", warmup=2):
        return {"max_steps": steps, "training": {"schedule_type": schedule, "warmup_steps": warmup}}

    assert extended(settings(10), settings(20))["max_steps"] == 10            # the same run, longer
    assert extended(settings(10, warmup=12), settings(20, warmup=12))["max_steps"] == 20   # warm-up not reached
    assert extended(settings(10, "cosine"), settings(20, "cosine"))["max_steps"] == 20
    assert extended(settings(10, "linear"), settings(5, "linear"))["max_steps"] == 5
    assert extended(settings(20), settings(10))["max_steps"] == 10             # shorter: another run


def test_a_constant_schedule_run_extends_with_the_numbers_of_one_longer_run(tmp_path, capsys):
    from test_pretrain import make_tiny_shards, tiny_flags, train_losses

    from bigs.cli.pretrain import main

    shards = make_tiny_shards(tmp_path / "data")
    flags = ("--schedule_type", "constant", "--warmup_steps", "1", "--eval_steps", "0", "--save_steps", "2",
             "--report_to", "none", "--hidden_dropout_prob", "0")
    assert main(tiny_flags(shards, tmp_path / "short", *flags, "--max_steps", "2")) == 0
    assert main(tiny_flags(shards, tmp_path / "short", *flags, "--max_steps", "3")) == 0
    assert "resumed from step 2 of 3" in capsys.readouterr().err
    assert main(tiny_flags(shards, tmp_path / "long", *flags, "--max_steps", "3")) == 0
    assert train_losses(tmp_path / "short") == pytest.approx(train_losses(tmp_path / "long"), abs=1e-6)
    cosine = ("--schedule_type", "cosine", "--warmup_steps", "1", "--eval_steps", "0", "--report_to", "none")
    assert main(tiny_flags(shards, tmp_path / "cosine", *cosine, "--max_steps", "2")) == 0
    assert main(tiny_flags(shards, tmp_path / "cosine", *cosine, "--max_steps", "3")) == 2
    assert "max_steps was 2, now 3 (a run can be extended with a larger --max_steps only when its schedule is " \
           "constant" in capsys.readouterr().err
