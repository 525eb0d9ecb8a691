"""`bigs predict`: classify texts with a fine-tuned checkpoint.

    bigs predict --model_name_or_path bigs_demo "owl red fox and fox sun" "red owl and sun fox"
    bigs predict --model_name_or_path BiGS_mrpc/ --input_file pairs.tsv --text_columns s1 s2

Prints one JSON object per text: the label and the probability of every label (or the
score of a regression model). --input_file takes a .txt file (one text a line) or a
CSV/TSV/JSON(L) file read like `bigs glue --test_file`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

import numpy as np

from ..errors import BiGSError
from .common import setup_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bigs predict", allow_abbrev=False, description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="texts to classify; a TAB inside a text separates a pair")
    parser.add_argument("--model_name_or_path", required=True, help="fine-tuned checkpoint folder or hub id")
    parser.add_argument("--input_file", help=".txt (one text a line) or CSV/TSV/JSON(L) with text columns")
    parser.add_argument("--text_columns", nargs="+", help="text column(s) of --input_file (default: detected)")
    parser.add_argument("--max_seq_length", type=int, help="default: the tokenizer's model_max_length")
    parser.add_argument("--batching", choices=("longest", "max_length"), default="longest",
                        help="pad each batch to its longest text (default), or every text to --max_seq_length")
    parser.add_argument("--pad_mode", choices=("exact", "reference"),
                        help="how the model treats pads (default: the model's config, as it was fine-tuned)")
    parser.add_argument("--padding", choices=("exact", "max_length", "reference"),
                        help="as bigs glue's: sets --batching and --pad_mode together")
    parser.add_argument("--batch_size", type=int, default=32)
    return parser


def _read_texts(args) -> tuple[list[str], list[str] | None]:
    from ..data.glue import load_user_files
    from ..data.text import read_text

    if args.input_file is None:
        pairs = [text.split("\t", 1) for text in args.texts]
        if any(len(pair) == 2 for pair in pairs):
            return [pair[0] for pair in pairs], [pair[1] if len(pair) == 2 else "" for pair in pairs]
        return list(args.texts), None
    if args.input_file.endswith(".txt"):
        return [line for line in read_text(args.input_file).splitlines() if line.strip()], None
    data, _ = load_user_files(test_file=args.input_file, text_columns=args.text_columns)
    return data["test"].text_a, data["test"].text_b


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    from ..data.batching import Batching, encode
    from ..data.glue import Examples
    from ..modeling import FlaxBiGSForSequenceClassification
    from ..predict import predict_logits
    from ..tokenizer import BiGSTokenizer

    try:
        if args.padding is not None:
            from ..train.finetune import PADDING_ALIASES

            args.batching, args.pad_mode = PADDING_ALIASES[args.padding]
        texts, pairs = _read_texts(args)
        if not texts:
            raise BiGSError("no texts to classify; give them as arguments or with --input_file")
        if args.batch_size < 1:
            raise BiGSError(f"--batch_size={args.batch_size}; expected a positive integer")
        logging.getLogger("bigs").setLevel(logging.ERROR)   # what loading re-initialised is checked below
        model, report = FlaxBiGSForSequenceClassification.from_pretrained(args.model_name_or_path,
                                                                          output_loading_info=True)
        untrained = [key for key in report.missing_keys + [k for k, _, _ in report.mismatched_keys]
                     if key.startswith("classifier")]
        if untrained:
            raise BiGSError(f"{args.model_name_or_path} has no trained classification head ({', '.join(untrained)} "
                            "would be random); fine-tune it first with `bigs glue --model_name_or_path ...`")
        tokenizer = BiGSTokenizer.from_pretrained(args.model_name_or_path)
        max_len = (args.max_seq_length if args.max_seq_length is not None
                   else min(tokenizer.model_max_length, model.config.max_position_embeddings))
        if not 3 <= max_len <= model.config.max_position_embeddings:
            raise BiGSError(f"--max_seq_length={max_len}; expected 3 to the model's max_position_embeddings="
                            f"{model.config.max_position_embeddings} ([CLS], [SEP] and at least one token)")
        data = encode(tokenizer, Examples(texts, pairs, None, list(range(len(texts)))), max_len)
        logits = predict_logits(model, data, batching=Batching(args.batching, max_len), batch_size=args.batch_size,
                                pad_id=tokenizer.pad_token_id, pad_mode=args.pad_mode)
    except BiGSError as error:
        print(f"bigs predict: error: {error}", file=sys.stderr)
        return 2
    try:
        _print_rows(texts, pairs, logits, model.config)
    except BrokenPipeError:             # `bigs predict ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 128 + signal.SIGPIPE
    except OSError as error:            # a full disk, say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"bigs predict: error: cannot write the predictions ({error.strerror})", file=sys.stderr)
        return 1
    return 0


def _print_rows(texts, pairs, logits, config) -> None:
    """One JSON line per text: the label and its probabilities, or the score (regression)."""
    id2label = config.id2label
    regression = config.problem_type == "regression" or config.num_labels == 1
    for i, text in enumerate(texts):
        row = {"text": text if pairs is None else [text, pairs[i]]}
        if regression:
            row["score"] = round(float(logits[i, 0]), 4)
        else:
            probs = np.exp(logits[i] - logits[i].max())
            probs /= probs.sum()
            row["label"] = id2label[int(probs.argmax())]
            row["probabilities"] = {id2label[k]: round(float(p), 4) for k, p in enumerate(probs)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
