"""`bigs glue` / `python run_glue.py`: fine-tune on a GLUE task or your own labelled files.

The flags of the published command work as written:

    python run_glue.py --model_name_or_path JunxiongWang/BiGS_512_MNLI --task_name mrpc \\
      --max_seq_length 512 --learning_rate 2e-5 --num_train_epochs 3 \\
      --per_device_train_batch_size 2 --logging_steps 100 --eval_steps 500 \\
      --weight_decay 0.01 --output_dir BiGS_mrpc/

The work is done by bigs.train.finetune.run; this module only parses flags.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BiGSError
from ..train.arguments import DEFAULT_MAX_SEQ_LENGTH, MODEL_SIZE_KEYS, PAD_MODES, PADDING_ALIASES, FinetuneConfig
from .common import (ArgumentParser, HelpFormatter, add_training_flags, arguments_from, interrupted, report,
                     setup_logging, spellings)


def build_parser(prog: str = "bigs glue") -> argparse.ArgumentParser:
    """The argparse parser of `bigs glue` (documents every flag; used by --help and the docs tests)."""
    defaults = FinetuneConfig(output_dir="")
    parser = ArgumentParser(prog=prog, allow_abbrev=False,
                                     formatter_class=HelpFormatter,
                                     description="Fine-tune BiGS for sequence classification or regression.")
    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", help="checkpoint folder or hub id; omit to train from random init")
    model.add_argument("--config_name", help="config.json for random init (default: a BiGS_512-shaped config)")
    model.add_argument("--tokenizer_name", help="tokenizer folder or vocab.txt (default: the model's)")
    for key in MODEL_SIZE_KEYS:
        model.add_argument(*spellings(key), dest=key, type=int, help=f"random init: config {key}")
    model.add_argument("--freeze_kernel", action="store_true",
                       help="do not train the SSM kernels (A, C, step) and token-type embeddings")

    data = parser.add_argument_group("data")
    data.add_argument("--task_name", help="GLUE task: cola sst2 mrpc stsb qqp mnli qnli rte wnli")
    data.add_argument("--data_dir", help="folder of GLUE TSV files; default: $GLUE_DIR, else ./glue_data, else the hub via `datasets`")
    data.add_argument("--train_file", help="your CSV/TSV/JSON(L) training file")
    data.add_argument("--validation_file", help="your evaluation file")
    data.add_argument("--test_file", help="your file to predict (labels not needed)")
    data.add_argument("--text_columns", nargs="+", help="one or two text columns of your files (default: detected)")
    data.add_argument("--label_column", help="label column of your files (default: label, labels or score)")
    data.add_argument("--max_seq_length", type=int, default=defaults.max_seq_length,
                      help=f"longest input in tokens; longer ones are truncated (default: "
                           f"{DEFAULT_MAX_SEQ_LENGTH}, or the model's max_position_embeddings when shorter)")
    data.add_argument("--batching", choices=("longest", "max_length"),
                      help="longest: pad each batch to its longest example, batches of similar lengths "
                           "(default); max_length: pad every example to --max_seq_length")
    data.add_argument("--pad_mode", choices=PAD_MODES,
                      help="exact: pads contribute nothing, predictions independent of the batch (default); "
                           "reference: pads flow through the backward SSM as in the original")
    data.add_argument("--padding", choices=tuple(PADDING_ALIASES),
                      help="the published flag: exact = --batching longest --pad_mode exact; max_length = "
                           "--batching max_length --pad_mode exact; reference = --batching max_length --pad_mode reference")
    data.add_argument("--pad_to_multiple_of", type=int, default=defaults.pad_to_multiple_of,
                      help="longest batching rounds batch lengths up to this multiple")
    for split in ("train", "eval", "predict"):
        data.add_argument(f"--max_{split}_samples", type=int, help=f"use only the first n {split} examples")

    add_training_flags(parser, defaults, helps={
        "eval_steps": "evaluate, keep the best model and checkpoint every n steps (default: each epoch)",
        "save_steps": "save a training checkpoint every n steps (default: with each evaluation)",
        "max_steps": "optimiser updates to run; 0 or less: as many as --num_train_epochs gives (default)"})
    training = parser.add_argument_group("fine-tuning")
    training.add_argument("--num_train_epochs", type=float, default=defaults.num_train_epochs,
                          help="epochs to train, unless --max_steps > 0")
    for phase in ("train", "eval", "predict"):
        training.add_argument(f"--do_{phase}", action="store_true", help="run only the phases given (default: all)")
    return parser


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """The FinetuneConfig of parsed flags; --padding becomes --batching and --pad_mode."""
    if args.padding is not None:
        if args.batching is not None or args.pad_mode is not None:
            raise BiGSError("--padding is the published spelling of --batching with --pad_mode; give one or the other")
        args.batching, args.pad_mode = PADDING_ALIASES[args.padding]
    defaults = FinetuneConfig(output_dir="")
    args.batching = args.batching or defaults.batching
    args.pad_mode = args.pad_mode or defaults.pad_mode
    overrides = {key: getattr(args, key) for key in MODEL_SIZE_KEYS if getattr(args, key) is not None}
    return arguments_from(args, FinetuneConfig, model_overrides=overrides)


def main(argv: list[str] | None = None, prog: str = "bigs glue") -> int:
    """Run `bigs glue` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    from ..train.finetune import run

    try:
        results = run(config_from_args(args))
    except BiGSError as error:
        return report(prog, error)
    except KeyboardInterrupt:
        return interrupted(prog, "add --resume to the same command to continue from the latest checkpoint")
    best = results.get("best_metric")
    if best is not None:
        print(f"best {results['metric']} = {best:.4f} at step {results['best_step']}; "
              f"model and eval_results.json in {args.output_dir}")
    elif results.get("eval"):                        # --do_eval without training
        for split, metrics in results["eval"].items():
            shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items())
            print(f"{split}: {shown}; eval_results.json in {args.output_dir}")
    for path in results.get("prediction_files", []):
        print(f"predictions in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
