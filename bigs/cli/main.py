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
}

# Commands that train: run as `bigs <command>`, they restart with malloc on huge pages first.
TRAINING = ("demo", "glue", "pretrain")


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: bigs <command> [flags]   (bigs <command> --help for its flags)", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    as_command = argv is None
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"bigs: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if as_command and name in TRAINING and "-h" not in rest and "--help" not in rest:
        from bigs.runtime import relaunch_with_hugepages
        relaunch_with_hugepages(say_now=False)
    target = COMMANDS[name][0]
    module_name, _, func = target.partition(":")
    entry = getattr(importlib.import_module(module_name), func or "main")
    code = entry(rest)
    if as_command:
        from bigs.cli.common import end_process
        return end_process(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
