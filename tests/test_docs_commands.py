"""Every command in README.md and docs/*.md: each one parses with its command's own parser
(no unknown flag, no stale choice), and the ones a newcomer runs first run here, scaled
down (fewer steps, a smaller model, a slice of the data, local files for hub ids)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What a command line starts with -> (the bigs command it is, the argv after it).
PROGRAMS = {"bigs": None, "python run_glue.py": "glue", "python pretrain.py": "pretrain"}
SHELL_ONLY = ("pip install", "python3 -m venv", "python -m pytest", "python experiments/equal_budget.py")


def command_lines() -> list[tuple[str, str]]:
    """(where, command) of every shell command in the docs' unlabelled or shell code blocks,
    backslash continuations joined; `a && b` and `a | b` give each part that runs a program."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for match in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
            if match.group(1) not in ("", "sh", "bash", "console"):
                continue
            start = text.count("\n", 0, match.start()) + 2
            joined = match.group(2).replace("\\\n", " ")
            for offset, line in enumerate(joined.splitlines()):
                for part in re.split(r"&&|\|", line):
                    part = part.split("#", 1)[0].strip() if not part.strip().startswith("bigs") else part.strip()
                    if re.match(r"(bigs|python run_glue\.py|python pretrain\.py)( |$)", part) or \
                            part.startswith(SHELL_ONLY):
                        found.append((f"{doc.relative_to(ROOT)}:{start + offset}", part))
    return found


def split_command(command: str) -> tuple[str, list[str]]:
    """(bigs command name, argv) of a bigs / run_glue.py / pretrain.py line."""
    words = shlex.split(command.replace("<TAB>", "\t"))
    if words[0] == "bigs":
        return words[1], words[2:]
    return PROGRAMS[" ".join(words[:2])], words[2:]


def parser_of(name: str):
    from bigs.cli.main import COMMANDS

    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    return module.build_parser()


COMMANDS = command_lines()


def test_the_docs_have_the_commands_this_test_knows():
    assert len(COMMANDS) >= 15, COMMANDS
    wheres = " ".join(where for where, _ in COMMANDS)
    assert "README.md" in wheres and "docs/finetuning.md" in wheres and "docs/study.md" in wheres


@pytest.mark.parametrize("where, command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_documented_command_parses(where, command):
    if command.startswith(SHELL_ONLY):
        if command.startswith("pip install"):
            extras = re.findall(r"\[([\w,]+)\]", command)
            pyproject = (ROOT / "pyproject.toml").read_text()
            for extra in ",".join(extras).split(",") if extras else []:
                assert re.search(rf"^{extra} = ", pyproject, re.M), f"{where}: no extra [{extra}] in pyproject.toml"
        if command.startswith("python experiments/equal_budget.py"):
            sys.path.insert(0, str(ROOT / "experiments"))
            try:
                import equal_budget
            finally:
                sys.path.pop(0)
            equal_budget.build_parser().parse_args(shlex.split(command)[2:])
        return
    name, argv = split_command(command)
    parser = parser_of(name)
    try:
        parser.parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{where}: `{command}` does not parse (exit {exit_.code})")


# ----------------------------------------------------------------- the runs, scaled down
TINY_MODEL = ["--hidden_size", "16", "--intermediate_size", "32", "--num_ssm", "4"]
SCALE = {
    "build-shards": ["--examples_per_shard", "64"],
    "pretrain": ["--max_steps", "2", "--n_layers", "1", *TINY_MODEL, "--per_device_train_batch_size", "4",
                 "--per_device_eval_batch_size", "8", "--max_eval_batches", "1", "--warmup_steps", "1",
                 "--disable_tqdm"],
    "glue": ["--max_steps", "2", "--max_train_samples", "8", "--max_eval_samples", "8", "--max_predict_samples", "4",
             "--max_seq_length", "64", "--per_device_train_batch_size", "4", "--disable_tqdm"],
}


def scaled(command: str, shared: Path, local_model: str = "BiGS_small") -> tuple[str, list[str]]:
    """The command with a local checkpoint for the hub id (the README pretraining block's
    model), and SCALE's flags appended (argparse keeps the last value of a flag)."""
    command = command.replace("JunxiongWang/BiGS_512_MNLI", local_model)
    command = command.replace("../shared", str(shared))
    name, argv = split_command(command)
    return name, argv + SCALE.get(name, [])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("docs")
    (work / "pairs.tsv").write_text("s1\ts2\nthe cat sat\ta cat was sitting\nit rains\tthe sun shines\n")
    return work


def documented(where_part: str, starts: str) -> str:
    return next(command for where, command in COMMANDS if where_part in where and command.startswith(starts))


def run_bigs(name: str, argv: list[str]) -> int:
    from bigs.cli.main import main

    return main([name, *argv])


@pytest.fixture(scope="module")
def readme_pretrained(workdir, shared_dir, compilation_cache):
    """The README's pretraining block, run in workdir: build-shards on the whole corpus as
    written, then 2 steps of a tiny model. Returns the captured stdout of build-shards."""
    import contextlib
    import io
    import os

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert run_bigs(*scaled(documented("README.md", "bigs build-shards"), shared_dir)) == 0
        assert run_bigs(*scaled(documented("README.md", "bigs pretrain"), shared_dir)) == 0
    finally:
        os.chdir(cwd)
    return printed.getvalue()


def test_readme_pretraining_block_runs(workdir, readme_pretrained, shared_dir, monkeypatch, capsys):
    info = json.loads((workdir / "shards" / "data_info.json").read_text())
    quoted = re.search(r"build-shards` writes ([\d,]+) training sequences of 128 tokens and ([\d,]+) held-out",
                       (ROOT / "README.md").read_text())
    assert quoted, "the README quotes what its build-shards command writes"
    assert [int(n.replace(",", "")) for n in quoted.groups()] == [info["num_examples"]["train"],
                                                                  info["num_examples"]["test"]]
    assert (workdir / "BiGS_small" / "flax_model.msgpack").is_file()
    monkeypatch.chdir(workdir)
    for where, command in COMMANDS:              # the study's `bigs plot` commands, on this run
        if where.startswith("docs/study.md") and command.startswith("bigs plot"):
            command = command.replace("study/pretrain/bigs", "BiGS_small").replace("study/pretrain/bert", "BiGS_small")
            assert run_bigs(*scaled(command, shared_dir)) == 0, command
    assert "90%-mass reach" in capsys.readouterr().out


def test_published_glue_command_and_the_predict_commands_run(workdir, readme_pretrained, shared_dir, monkeypatch,
                                                             capsys):
    monkeypatch.chdir(workdir)
    assert run_bigs(*scaled(documented("README.md", "python run_glue.py"), shared_dir)) == 0
    assert (workdir / "BiGS_mrpc" / "eval_results.json").is_file()
    capsys.readouterr()
    predicts = [command for where, command in COMMANDS
                if where.startswith("docs/finetuning.md") and command.startswith("bigs predict")]
    assert len(predicts) == 3
    assert run_bigs(*scaled(predicts[0], shared_dir)) == 0
    assert run_bigs(*scaled(predicts[1], shared_dir)) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(rows) == 3                                   # one argument, then the two rows of pairs.tsv
    # the pipe, as a shell runs it
    line = next((l for l in (ROOT / "docs" / "finetuning.md").read_text().splitlines()
                 if "| bigs predict" in l and l.startswith(("cut ", "tail "))), None)
    assert line is not None, "docs/finetuning.md pipes a file into bigs predict"
    bigs = str(Path(sys.executable).parent / "bigs")
    done = subprocess.run(line.replace("bigs predict", f"{bigs} predict"), shell=True, cwd=workdir,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len((workdir / "out.tsv").read_text().splitlines()) == 3    # a header and two rows
