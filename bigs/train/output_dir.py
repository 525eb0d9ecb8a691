"""A training run's output folder: what a run writes there, whether a folder already holds a
run, and whether a resumed command is that same run.

A run writes, beside what its task exports (the model, eval_results.json, predictions):

    run_settings.json   what a resume must agree with, written at the start
    checkpoints/        training checkpoints (checkpointing.py)
    metrics.jsonl       one JSON record per logged step and per evaluation
    runs/               TensorBoard logs

Nothing here writes before `RunFolder.check` has passed, so a refused command leaves every
file as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError, RunMismatchError
from ..files import append_line, check_writable_folder, write_json, write_text

SETTINGS = "run_settings.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
TENSORBOARD = "runs"
# What marks a folder as holding a run: its settings (written before anything else) or its
# checkpoints ("run_config.json" is the settings' name in earlier versions).
RUN_MARKERS = (SETTINGS, CHECKPOINTS, "run_config.json")
# What --overwrite_output_dir deletes: the markers and the run's logs and results
# ("tensorboard" is an earlier name of runs/). Exported models are not deleted: the new run
# replaces them, each file atomically. In a folder without a marker these are the user's.
RUN_STATE = (*RUN_MARKERS, METRICS, TENSORBOARD, "eval_results.json", "tensorboard")
# What an exported model is made of (save_pretrained with a tokenizer).
MODEL_FILES = ("config.json", "flax_model.msgpack", "model.safetensors", "tokenizer.json", "vocab.txt",
               "tokenizer_config.json")

# What may differ when a run is resumed: how often it logs, evaluates and saves, how many
# checkpoints it keeps, what it shows and how big its evaluation batches are. None of these
# changes which examples a step trains on, nor the numbers it computes.
MAY_CHANGE_ON_RESUME = (
    "logging_steps", "eval_steps", "save_steps", "save_total_limit", "disable_tqdm", "report_to",
    "per_device_eval_batch_size", "max_eval_batches", "max_predict_samples", "test_file",
    "do_eval", "do_predict",
)


class RunFolder:
    """The output folder of one run. Only the main process writes (`writer=True`)."""

    def __init__(self, path: str | os.PathLike, writer: bool = True):
        self.path = Path(path)
        self.writer = writer

    @property
    def checkpoints(self) -> Path:
        """The folder of the run's training checkpoints (one subfolder per saved step)."""
        return self.path / CHECKPOINTS

    def present(self, names) -> list[str]:
        """Those of `names` that exist in the folder."""
        return [name for name in names if (self.path / name).exists()]

    def check(self, settings: dict[str, Any] | None, *, resume: bool | None, overwrite: bool,
              outputs=MODEL_FILES) -> bool:
        """Decide, before writing anything, whether this command starts afresh (False) or
        resumes the run in the folder (True).

        resume=None resumes a run found here, False refuses one (unless `overwrite`), True
        asks for one. `settings` None skips the comparison (a command that evaluates or
        predicts without training). `outputs` names the other files the command writes.
        Raises ConfigError when output_dir cannot be a writable folder; when it holds a run
        and neither resuming nor overwriting was asked for, or another command's run; when
        resume=True and it holds no run; when it holds no run but files the command would
        replace (the user's own). RunMismatchError names the first setting that differs from
        the saved run's.
        """
        self.check_writable()
        if overwrite:
            return False
        found = self.present(RUN_MARKERS)
        if not found:
            if resume is True:
                raise ConfigError(f"--resume: output_dir {str(self.path)!r} holds no run to continue; leave out "
                                  "--resume to start a new run there, or give the folder of the run to continue")
            clash = self.present((*RUN_STATE, *outputs))
            if clash:
                raise ConfigError(f"output_dir {str(self.path)!r} holds files this command would replace "
                                  f"({', '.join(clash)}) and no run; pass --overwrite_output_dir to replace them, "
                                  "or choose another --output_dir")
            return False
        saved, unreadable = self._read_settings()
        other = saved.get("command") if saved is not None else None
        if settings is not None and other not in (None, settings.get("command")):
            raise ConfigError(f"output_dir {str(self.path)!r} holds a `bigs {other}` run, not one this command can "
                              "continue; pass --overwrite_output_dir to replace it, or choose another --output_dir")
        if resume is False:
            raise ConfigError(f"output_dir {str(self.path)!r} already holds a run ({', '.join(found)}); "
                              "pass --resume to continue it (also to only evaluate or predict there, with "
                              "--do_eval / --do_predict), or --overwrite_output_dir to delete it and start again")
        if settings is not None and unreadable is not None:
            raise RunMismatchError(f"{self.path / SETTINGS} cannot be read ({unreadable}); cannot tell whether this "
                                   "command continues that run; pass --overwrite_output_dir to start again")
        if settings is not None and saved is not None:
            current = json.loads(json.dumps(settings))
            difference = first_difference(saved, extended(saved, current))
            if difference is not None:
                hint = ""
                if difference.startswith("max_steps was"):
                    hint = (" (a run can be extended with a larger --max_steps only when its schedule is constant: "
                            "with decay, every step's learning rate depends on the total)")
                raise RunMismatchError(f"{str(self.path)!r} holds another run: {difference}{hint}; resume with the "
                                       "same settings, or pass --overwrite_output_dir to start over (or another "
                                       "--output_dir)")
        return True

    def check_writable(self) -> None:
        """ConfigError unless output_dir is a folder, or can be made one, that we may write in."""
        check_writable_folder(self.path)

    def saved_command(self) -> str | None:
        """The command of the run recorded here ("glue", "pretrain"), None when unknown."""
        saved = self.saved_settings()
        return saved.get("command") if saved is not None else None

    def saved_settings(self) -> dict[str, Any] | None:
        """The run's run_settings.json; None when there is none or it cannot be read."""
        return self._read_settings()[0]

    def _read_settings(self) -> tuple[dict[str, Any] | None, str | None]:
        """(the saved run_settings.json, None); (None, why it cannot be read); (None, None)
        when there is none."""
        path = self.path / SETTINGS
        if not path.is_file():
            return None, None
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return None, str(error)
        return (saved, None) if isinstance(saved, dict) else (None, f"a JSON {type(saved).__name__}, not an object")

    def start(self, settings: dict[str, Any] | None, *, resumed_step: int | None, overwrite: bool) -> None:
        """After `check` and the restore: clear an overwritten run, record the settings (unless
        None), and cut metrics.jsonl back to the restored step (records after it will be
        logged again)."""
        if not self.writer:
            return
        if overwrite:
            for name in RUN_STATE:
                target = self.path / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        self.path.mkdir(parents=True, exist_ok=True)
        if settings is not None:
            write_json(self.path / SETTINGS, settings)
            self._truncate_metrics(resumed_step or 0)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl."""
        if self.writer:
            append_line(self.path / METRICS, json.dumps(record))

    def _truncate_metrics(self, last_step: int) -> None:
        path = self.path / METRICS
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:     # a line torn by a crash
                continue
            if record.get("step", 0) <= last_step:
                kept.append(line + "\n")
        write_text(path, "".join(kept))


def read_metrics(output_dir: str | os.PathLike, kind: str = "train") -> list[dict]:
    """The records of output_dir/metrics.jsonl of one kind ("train" or "eval"); [] before any.
    A line a crash tore is left out."""
    path = Path(output_dir) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("kind") == kind:
            records.append(record)
    return records


def extended(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`current`, with the saved max_steps when it only extends a run whose schedule is
    constant after a warm-up that both totals contain: every step already taken had the
    learning rate it has in the longer run, so the longer run continues the same numbers."""
    training, old_training = current.get("training", {}), saved.get("training", {})
    old_steps, new_steps = saved.get("max_steps"), current.get("max_steps")
    if (isinstance(old_steps, int) and isinstance(new_steps, int) and new_steps > old_steps
            and training.get("schedule_type") == old_training.get("schedule_type") == "constant"
            and training.get("warmup_steps") == old_training.get("warmup_steps")
            and training.get("warmup_steps", 0) <= old_steps):
        return {**current, "max_steps": old_steps}
    return current


def first_difference(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> str | None:
    """'name: saved -> current' for the first setting that differs (in `current`'s order,
    nested dicts followed down), or None when they agree on everything that must not change."""
    for name in [*current, *(k for k in saved if k not in current)]:
        if name in MAY_CHANGE_ON_RESUME:
            continue
        old, new = saved.get(name, "<absent>"), current.get(name, "<absent>")
        if isinstance(old, dict) and isinstance(new, dict):
            found = first_difference(old, new, f"{prefix}{name}.")
            if found is not None:
                return found
        elif old != new:
            return f"{prefix}{name} was {old!r}, now {new!r}"
    return None
