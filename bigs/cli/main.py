"""`bigs <command> ...`: one console script, a subcommand per job.

Each subcommand lives in its own module with a `main(argv) -> int` function; it is
imported only when used, so `bigs --help` stays fast. Run as a command (not called with
argv), the commands that train first restart the process with malloc on huge pages
(bigs.runtime).
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("bigs.cli.demo", "train and evaluate a small BiGS on a built-in task, offline, in minutes"),
    "glue": ("bigs.cli.glue", "fine-tune on a GLUE task or your own labelled files (run_glue.py flags)"),
    "predict": ("bigs.cli.predict", "classify text with a fine-tuned checkpoint"),
    "pretrain": ("bigs.cli.pretrain", "masked-LM pretraining from HDF5 shards (pretrain.py flags)"),
    "build-shards": ("bigs.cli.build_shards", "tokenise, pack and mask raw text into HDF5 shards"),
    "convert": ("bigs.cli.convert", "convert a checkpoint folder between Flax and PyTorch files"),
    "embed": ("bigs.cli.embed", "sentence embeddings (mean of the last hidden states) of each line of a file"),
    "plot": ("bigs.cli.plot", "draw training curves of runs, or the learned SSM kernels of a checkpoint"),
    "export-onnx": ("bigs.cli.export_onnx", "export a checkpoint folder as an ONNX model (needs torch)"),
}

# Commands that train: run as `bigs <command>`, they restart with malloc on huge pages first.
TRAINING = ("demo", "glue", "pretrain")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: bigs <command> [flags]   (bigs <command> --help for its flags; bigs --version)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The `bigs` command: dispatch `bigs COMMAND ...` to the command's main; returns its exit
    status (2 for an unknown command or a missing third-party package, named in one line)."""
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from bigs import __version__

        print(f"bigs {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"bigs: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)} (`bigs --help` says "
              "what each does)", file=sys.stderr)
        return 2
    try:
        if not as_command:
            return _entry(name)(rest)
        return run_program(name, rest)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in ("bigs", "BiGS"):
            raise                                # our own code: a bug, not an installation problem
        print(f"bigs {name}: error: the Python package {error.name!r} is missing; install bigs with its "
              "dependencies: pip install -e . (PyTorch parts: pip install -e \".[torch]\", plots: "
              "\".[plot]\")", file=sys.stderr)
        return 2


def run_program(name: str, argv: list[str], prog: str | None = None) -> int:
    """Run command `name` as this process's program (`bigs <name>`, or run_glue.py /
    pretrain.py with `prog`): a training command first restarts with malloc on huge pages;
    Ctrl-C, even while the command's modules are still importing, is one line and exit 130."""
    if name in TRAINING and "-h" not in argv and "--help" not in argv:
        from bigs.runtime import relaunch_with_hugepages
        relaunch_with_hugepages(say_now=False)
    from bigs.cli.common import end_process, interrupted, quiet_unraisables
    from bigs.runtime import ctrl_c_noted

    sys.unraisablehook = quiet_unraisables
    try:
        with ctrl_c_noted():           # a Ctrl-C Python drops while starting up still stops training
            entry = _entry(name)
            code = entry(argv) if prog is None else entry(argv, prog=prog)
    except KeyboardInterrupt:          # while importing; each command handles it once running
        code = interrupted(prog or f"bigs {name}", "nothing was written; run the command again")
    return end_process(code)


def _entry(name: str):
    """The `main(argv)` function of command `name`, its module imported now."""
    module_name, _, func = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module_name), func or "main")


if __name__ == "__main__":
    sys.exit(main())
