"""What the commands share: the training flags, the console, and the exit codes.

The flags of every training command (bigs.train.loop.TrainingArguments) are defined once
here; each command passes its own defaults (fine-tuning's are transformers', pretraining's
the original pretrain.py's) and the published spellings it must keep accepting as aliases.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import warnings
from typing import Any

from ..errors import BiGSError, NonFiniteError
from ..runtime import NO_HUGEPAGES_FLAG

# Exit codes: 2 for anything refused before training (bad flags, data, another run in
# output_dir), 1 for a run that failed on the way (a non-finite loss), 130 for Ctrl-C.
EXIT_REFUSED, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


# One idea, one flag name in every command; the other spelling people know (the original's,
# or the file-writing commands') is accepted everywhere as an alias.
ALIASES = {"disable_tqdm": "disable_progress_bar", "save_total_limit": "keep_checkpoints",
           "overwrite_output_dir": "overwrite", "overwrite": "overwrite_output_dir",
           "n_layers": "num_hidden_layers", "num_hidden_layers": "n_layers"}


def spellings(name: str) -> list[str]:
    """The flag `--name` and its alias from ALIASES, if it has one."""
    return [f"--{name}"] + ([f"--{ALIASES[name]}"] if name in ALIASES else [])


def add_overwrite_flag(parser, name: str = "overwrite", help: str = "replace --output if it exists") -> None:
    """--overwrite (or --overwrite_output_dir), each accepted for the other."""
    parser.add_argument(*spellings(name), dest=name, action="store_true", help=help)


def add_progress_flag(parser) -> None:
    """--disable_tqdm, alias --disable_progress_bar."""
    parser.add_argument(*spellings("disable_tqdm"), dest="disable_tqdm", action="store_true", help="no progress bar")


def add_training_flags(parser: argparse.ArgumentParser, defaults, aliases: dict[str, str] | None = None,
                       helps: dict[str, str] | None = None) -> None:
    """Add the shared flags to `parser` with the defaults of `defaults` (a TrainingArguments).
    `aliases` maps a flag name to an older spelling accepted for it (e.g. max_steps ->
    num_total_train_steps), beside the common ALIASES; `helps` replaces a flag's help text
    where a command means more."""
    aliases, helps = {**ALIASES, **(aliases or {})}, helps or {}

    def add(group, name, **options):
        names = [f"--{name}"] + ([f"--{aliases[name]}"] if name in aliases else [])
        if "action" not in options:
            options.setdefault("default", getattr(defaults, name))
        if name in helps:
            options["help"] = helps[name]
        group.add_argument(*names, dest=name, **options)

    run = parser.add_argument_group("run")
    add(run, "output_dir", required=True, help="where checkpoints, logs, metrics and the model go")
    add(run, "overwrite_output_dir", action="store_true",
        help="start over in an output_dir holding a run (its checkpoints, logs and results are deleted)")
    add(run, "resume", action="store_true", default=defaults.resume,
        help="continue the run in output_dir from its latest checkpoint (the same settings are required)")
    add(run, "seed", type=int, help="seed of the init, data order, dropout and masks")
    add(run, "logging_steps", type=int, help="log the mean loss and learning rate every n steps")
    add(run, "eval_steps", type=int, help="evaluate every n steps and at the end")
    add(run, "save_steps", type=int, help="save a training checkpoint every n steps and at the end")
    add(run, "save_total_limit", type=int, help="training checkpoints kept for resuming")
    add(run, "disable_tqdm", action="store_true", help="no progress bar")
    add(run, "report_to", choices=("tensorboard", "none"), help="TensorBoard logs in output_dir/runs, or none")
    add_hugepages_flag(run)

    optimiser = parser.add_argument_group("optimisation")
    add(optimiser, "max_steps", type=int, help="optimiser updates to run")
    add(optimiser, "per_device_train_batch_size", type=int, help="examples per device per micro-batch")
    add(optimiser, "per_device_eval_batch_size", type=int, help="examples per device per evaluation batch")
    add(optimiser, "gradient_accumulation_steps", type=int,
        help="micro-batches per update; an update sees per-device batch x devices x this many examples")
    add(optimiser, "learning_rate", type=float, help="peak learning rate")
    add(optimiser, "schedule_type", choices=("linear", "cosine", "constant"), help="decay after the warm-up")
    add(optimiser, "cosine_schedule_alpha", type=float, help="cosine decay ends at this fraction of the peak")
    add(optimiser, "warmup_steps", type=int, help="steps of linear warm-up from 0 to the peak")
    add(optimiser, "weight_decay", type=float, help="AdamW weight decay (never on biases and LayerNorm scales)")
    add(optimiser, "adam_beta1", type=float, help="AdamW beta1")
    add(optimiser, "adam_beta2", type=float, help="AdamW beta2")
    add(optimiser, "adam_epsilon", type=float, help="AdamW epsilon (> 0)")
    add(optimiser, "max_grad_norm", type=float, help="global-norm gradient clipping; 0 turns it off")
    add(optimiser, "dtype", choices=("float32", "bfloat16"), help="computation dtype (params stay float32)")

    devices = parser.add_argument_group("devices")
    add(devices, "num_devices", type=int, help="use the first n devices (default: all)")
    add(devices, "fsdp", type=int, help="shard params and optimiser state over this many devices (divides num_devices)")
    devices.add_argument("--mesh", help="DATAxFSDP, e.g. 4x1 (data parallel) or 2x2; overrides the two above")


def add_hugepages_flag(parser) -> None:
    """--no_hugepages: read by bigs.runtime before parsing, kept here so that it parses."""
    parser.add_argument(NO_HUGEPAGES_FLAG, action="store_true",
                        help="do not restart with malloc on transparent huge pages (docs/performance.md)")


def arguments_from(namespace: argparse.Namespace, cls, **extra: Any):
    """An instance of the dataclass `cls` from the parsed flags of the same names (and `extra`)."""
    from ..train.sharding import parse_mesh

    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}
    if getattr(namespace, "mesh", None):
        values["num_devices"], values["fsdp"] = parse_mesh(namespace.mesh)
    return cls(**values, **extra)


class ArgumentParser(argparse.ArgumentParser):
    """The commands' parser: a bad flag or value is one line, `PROG: error: ...`, naming the
    flag and what --help lists, exit 2 (argparse's own prints its whole usage block first)."""

    def error(self, message: str):
        self.exit(EXIT_REFUSED, f"{self.prog}: error: {message} (`{self.prog} --help` lists the flags)\n")


class HelpFormatter(argparse.HelpFormatter):
    """--help that shows a flag's default where it has one and its help does not already say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        unset = action.default is None or action.default is False or action.default in ("", argparse.SUPPRESS)
        if unset or "default" in help_text:
            return help_text
        return f"{help_text} (default: %(default)s)" if help_text else "default: %(default)s"


def setup_logging() -> None:
    """The commands' console: progress from the `bigs` logger, and each warning (a damaged
    checkpoint set aside, a file read as Windows-1252) on one line."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("bigs").setLevel(logging.INFO)
    warnings.formatwarning = one_line_warning
    sys.unraisablehook = quiet_unraisables
    asyncio_logger = logging.getLogger("asyncio")
    if _keep_unless_abandoned_checkpoint_read not in asyncio_logger.filters:
        asyncio_logger.addFilter(_keep_unless_abandoned_checkpoint_read)


def one_line_warning(message, category, *_, **__) -> str:
    """A warning as the commands print it: one line, without Python's file and source line."""
    return f"WARNING {category.__name__}: {message}\n"


def quiet_unraisables(unraisable, default=sys.unraisablehook) -> None:
    """sys.unraisablehook of the commands. Two kinds are dropped, everything else is shown:
    - reading a damaged checkpoint fails in many of orbax's reads at once. Orbax keeps the
      first error (reported as one warning by bigs.train.checkpointing) and abandons the
      rest: their coroutines, and tensorstore's callbacks into the event loop orbax has
      closed by then, would each print a traceback, hundreds of lines;
    - a Ctrl-C that Python could not raise (it landed in a garbage-collector callback):
      bigs.runtime.ctrl_c_noted has noted it, and the command stops on it."""
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and "orbax" in code.co_filename:
        return
    error = unraisable.exc_value
    if unraisable.object is None and isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return
    if isinstance(error, KeyboardInterrupt):
        return
    default(unraisable)


def _keep_unless_abandoned_checkpoint_read(record: logging.LogRecord) -> bool:
    """The asyncio logger's side of the same: "Task exception was never retrieved" for one of
    orbax's abandoned reads (logged when the task is collected) is dropped."""
    message = record.getMessage()
    return not (message.startswith("Task exception was never retrieved") and "/orbax/" in message)


def interrupted(prog: str, how_to_continue: str) -> int:
    """Ctrl-C: one line saying how to continue, instead of a traceback; exit 130 as a shell does."""
    print(f"{prog}: interrupted; {how_to_continue}", file=sys.stderr)
    return EXIT_INTERRUPTED


def end_process(code: int) -> int:
    """A command's exit code, as the program ends. After Ctrl-C (130) the process ends at once
    with os._exit, once its output is flushed: tearing the interpreter down while XLA's and
    orbax's threads are still running sometimes crashed it (a segfault, exit 139, in about
    one interrupted run of four), and every file the run wrote is complete already (bigs.files)."""
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def report(prog: str, error: BiGSError) -> int:
    """Print `error` as one line and return the command's exit code."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return EXIT_FAILED if isinstance(error, NonFiniteError) else EXIT_REFUSED
