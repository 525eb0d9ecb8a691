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
import logging
import sys

from ..errors import BiGSError
from ..train.finetune import MODEL_SIZE_KEYS, PADDING_CHOICES, FinetuneConfig


def build_parser(prog: str = "bigs glue") -> argparse.ArgumentParser:
    defaults = FinetuneConfig(output_dir="")
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False,
                                     description="Fine-tune BiGS for sequence classification or regression.")
    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", help="checkpoint folder or hub id; omit to train from random init")
    model.add_argument("--config_name", help="config.json for random init (default: a BiGS_512-shaped config)")
    model.add_argument("--tokenizer_name", help="tokenizer folder or vocab.txt (default: the model's)")
    for key in MODEL_SIZE_KEYS:
        model.add_argument(f"--{key}", type=int, help=f"random init: config {key}")
    model.add_argument("--dtype", choices=("float32", "bfloat16"), default=defaults.dtype,
                       help="computation dtype (params stay float32)")
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
                      help="longest input in tokens; longer ones are truncated")
    data.add_argument("--padding", choices=PADDING_CHOICES, default=defaults.padding,
                      help="exact: per-batch padding, pads ignored (default); max_length: pad to "
                           "max_seq_length, pads ignored; reference: pad to max_seq_length, the original's padding")
    data.add_argument("--pad_to_multiple_of", type=int, default=defaults.pad_to_multiple_of,
                      help="exact padding rounds batch lengths up to this multiple")
    for split in ("train", "eval", "predict"):
        data.add_argument(f"--max_{split}_samples", type=int, help=f"use only the first n {split} examples")

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True, help="where the model, metrics and predictions go")
    train.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    train.add_argument("--weight_decay", type=float, default=defaults.weight_decay)
    train.add_argument("--warmup_steps", type=int, default=defaults.warmup_steps)
    train.add_argument("--max_grad_norm", type=float, default=defaults.max_grad_norm)
    train.add_argument("--num_train_epochs", type=float, default=defaults.num_train_epochs)
    train.add_argument("--max_steps", type=int, default=defaults.max_steps, help="> 0: overrides num_train_epochs")
    train.add_argument("--per_device_train_batch_size", type=int, default=defaults.per_device_train_batch_size)
    train.add_argument("--per_device_eval_batch_size", type=int, default=defaults.per_device_eval_batch_size)
    train.add_argument("--logging_steps", type=int, default=defaults.logging_steps)
    train.add_argument("--eval_steps", type=int, help="evaluate and checkpoint every n steps (default: each epoch)")
    train.add_argument("--seed", type=int, default=defaults.seed)
    train.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoints")
    train.add_argument("--overwrite_output_dir", action="store_true")
    train.add_argument("--save_total_limit", type=int, default=defaults.save_total_limit,
                       help="training checkpoints kept for --resume")
    for phase in ("train", "eval", "predict"):
        train.add_argument(f"--do_{phase}", action="store_true", help="run only the phases given (default: all)")
    train.add_argument("--disable_tqdm", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    values = vars(args).copy()
    overrides = {key: values.pop(key) for key in MODEL_SIZE_KEYS}
    values["model_overrides"] = {key: value for key, value in overrides.items() if value is not None}
    return FinetuneConfig(**values)


def main(argv: list[str] | None = None, prog: str = "bigs glue") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bigs").setLevel(logging.INFO)
    from ..train.finetune import run

    try:
        results = run(config_from_args(args))
    except BiGSError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    best = results.get("best_metric")
    if best is not None:
        print(f"best {results['metric']} = {best:.4f} at step {results['best_step']}; "
              f"model and eval_results.json in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
