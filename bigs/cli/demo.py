"""`bigs demo`: train a small BiGS from scratch, evaluate it, save it, in a few minutes offline.

The default task is built in (bigs.data.demo_task: does "open" come before "close"?), so
nothing is downloaded. `--task sst2 --data_dir glue_data` runs GLUE SST-2 instead
(needs the GLUE files and a BERT vocab.txt via --tokenizer_name).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from ..errors import BiGSError, ConfigError
from .common import (ArgumentParser, HelpFormatter, add_hugepages_flag, add_overwrite_flag, add_progress_flag,
                     interrupted, report, setup_logging)

# A BiGS small enough to train on two CPU cores in a minute or two.
DEMO_MODEL = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128, "num_ssm": 16}


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs demo` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog="bigs demo", allow_abbrev=False, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--output_dir", default="bigs_demo",
                        help="where the data, model and results go; an earlier demo there is replaced, anything "
                             "else is refused (default: bigs_demo)")
    add_overwrite_flag(parser, "overwrite_output_dir", help="replace what output_dir holds even if the demo did not make it")
    parser.add_argument("--task", choices=("order", "sst2"), default="order",
                        help="order: the built-in task (default); sst2: GLUE SST-2 from --data_dir")
    parser.add_argument("--data_dir", help="GLUE folder for --task sst2")
    parser.add_argument("--tokenizer_name", help="vocab.txt or tokenizer folder for --task sst2")
    parser.add_argument("--num_train_epochs", type=float, default=8.0, help="passes over the training data")
    parser.add_argument("--max_steps", type=int, default=-1,
                        help="optimiser updates; 0 or less: as many as --num_train_epochs gives (default)")
    parser.add_argument("--learning_rate", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="seed of the task's data, the init and the order")
    add_progress_flag(parser)
    add_hugepages_flag(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `bigs demo` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    from ..data.demo_task import write_demo_files
    from ..train.finetune import FinetuneConfig, run

    try:
        _check_output_dir(args.output_dir, args.overwrite_output_dir, args.seed)
    except BiGSError as error:
        return report("bigs demo", error)
    common = dict(output_dir=args.output_dir, overwrite_output_dir=True, learning_rate=args.learning_rate,
                  warmup_steps=50, weight_decay=0.01, per_device_train_batch_size=32,
                  per_device_eval_batch_size=128, num_train_epochs=args.num_train_epochs,
                  max_steps=args.max_steps, logging_steps=20, seed=args.seed, disable_tqdm=args.disable_tqdm)
    if args.task == "order":
        data = os.path.join(args.output_dir, "data")
        files = {name: os.path.join(data, f"{name}.csv") for name in ("train", "validation", "test")}
        config = FinetuneConfig(train_file=files["train"], validation_file=files["validation"],
                                test_file=files["test"], tokenizer_name=os.path.join(data, "vocab.txt"),
                                max_seq_length=32, model_overrides={**DEMO_MODEL, "max_position_embeddings": 32},
                                **common)
        try:
            config.validate()               # bad flags are refused before the data is written
        except BiGSError as error:
            return report("bigs demo", error)
        write_demo_files(data, seed=args.seed)
        example = "sun open owl red fox close tree"
    else:
        if not args.data_dir or not args.tokenizer_name:
            print("bigs demo: error: --task sst2 needs --data_dir (GLUE folder) and --tokenizer_name (vocab.txt)",
                  file=sys.stderr)
            return 2
        config = FinetuneConfig(task_name="sst2", data_dir=args.data_dir, tokenizer_name=args.tokenizer_name,
                                max_seq_length=64, model_overrides={**DEMO_MODEL, "max_position_embeddings": 64},
                                **common)
        example = "a gorgeous, witty, seductive movie."
    start = time.perf_counter()
    try:
        results = run(config, command="demo")
    except BiGSError as error:
        return report("bigs demo", error)
    except KeyboardInterrupt:
        return interrupted("bigs demo", "run it again to start over")
    minutes = (time.perf_counter() - start) / 60
    print(f"\n{args.task} dev {results['metric']}: {results['best_metric']:.4f} "
          f"(chance 0.5) after {minutes:.1f} min; model in {args.output_dir}")
    print(f"try it:  bigs predict --model_name_or_path {args.output_dir} \"{example}\"")
    return 0


def _check_output_dir(output_dir: str, overwrite: bool, seed: int) -> None:
    """The demo replaces an earlier demo's folder, or the data alone that this same demo
    writes (a demo stopped early); anything else there, another command's run or the
    user's files, only with --overwrite_output_dir. ConfigError otherwise, before anything
    is written."""
    from ..data.demo_task import demo_files
    from ..train.output_dir import MODEL_FILES, RUN_STATE, RunFolder

    folder = RunFolder(output_dir)
    folder.check_writable()
    if overwrite or folder.saved_command() == "demo" or not folder.path.is_dir():
        return
    data, expected = folder.path / "data", demo_files(seed=seed)
    ours = data.is_dir() and all(path.name in expected and path.is_file()
                                 and path.read_bytes() == expected[path.name].encode("utf-8")
                                 for path in data.iterdir())
    theirs = [name for name in folder.present((*RUN_STATE, *MODEL_FILES, "predict_results.tsv", "data"))
              if not (name == "data" and ours)]
    if theirs:
        raise ConfigError(f"output_dir {output_dir!r} holds files the demo did not make ({', '.join(theirs)}); "
                          "pass --overwrite_output_dir to replace them, or choose another --output_dir")


if __name__ == "__main__":
    sys.exit(main())
