"""`bigs predict`: classify texts with a fine-tuned checkpoint.

    bigs predict --model_name_or_path bigs_demo "owl red fox and fox sun" "red owl and sun fox"
    bigs predict --model_name_or_path BiGS_mrpc/ --input_file pairs.tsv --text_columns s1 s2
    cut -f2 lines.tsv | bigs predict --model_name_or_path bigs_demo --input_file - --output_file out.tsv

Writes one row per text, to stdout or --output_file: JSON lines (the text, the label and the
probability of every label, or the score of a regression model) or TSV (--output_format tsv,
or an --output_file ending in .tsv). Rows from a file carry its id column ("idx", "id" or
"index"; else the row number). --input_file takes a .txt file or - (stdin), one text a line,
or a CSV/TSV/JSON(L) file read like `bigs glue --test_file`. In arguments and in .txt lines
alike, a TAB separates the two texts of a pair. Texts longer than --max_seq_length tokens are
truncated, with a warning saying how many.
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
from .common import ArgumentParser, HelpFormatter, add_overwrite_flag, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs predict` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog="bigs predict", allow_abbrev=False, formatter_class=HelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("texts", nargs="*", help="texts to classify; a TAB inside a text separates a pair")
    parser.add_argument("--model_name_or_path", required=True, help="fine-tuned checkpoint folder or hub id")
    parser.add_argument("--input_file", help=".txt or - (stdin): one text a line; or CSV/TSV/JSON(L) with text columns")
    parser.add_argument("--text_columns", nargs="+", help="text column(s) of --input_file (default: detected)")
    parser.add_argument("--max_seq_length", type=int, help="default: the tokenizer's model_max_length")
    parser.add_argument("--batching", choices=("longest", "max_length"), default="longest",
                        help="pad each batch to its longest text (default), or every text to --max_seq_length")
    parser.add_argument("--pad_mode", choices=("exact", "reference"),
                        help="how the model treats pads (default: the model's config, as it was fine-tuned)")
    parser.add_argument("--padding", choices=("exact", "max_length", "reference"),
                        help="as bigs glue's: sets --batching and --pad_mode together")
    parser.add_argument("--batch_size", type=int, default=32, help="texts per batch")
    parser.add_argument("--output_file", help="write the rows here (atomically) instead of stdout")
    parser.add_argument("--output_format", choices=("jsonl", "tsv"),
                        help="default: tsv for an --output_file ending in .tsv, else jsonl")
    add_overwrite_flag(parser, help="replace --output_file if it exists")
    return parser


def _split_pairs(lines: list[str]) -> tuple[list[str], list[str] | None]:
    """Texts, and second texts when any line holds a TAB (the same rule for arguments and lines)."""
    pairs = [line.split("\t", 1) for line in lines]
    if any(len(pair) == 2 for pair in pairs):
        return [pair[0] for pair in pairs], [pair[1] if len(pair) == 2 else "" for pair in pairs]
    return list(lines), None


def _read_texts(args) -> tuple[list[str], list[str] | None, list | None]:
    """(texts, second texts or None, ids or None): ids are the file's id column or row numbers."""
    from ..data.glue import load_user_files
    from ..data.text import read_text

    if args.input_file is None:
        return (*_split_pairs(list(args.texts)), None)
    if args.input_file == "-" or args.input_file.endswith(".txt"):
        text = read_text(args.input_file)              # "-": stdin, decoded as files are
        numbered = [(number, line) for number, line in enumerate(text.splitlines()) if line.strip()]
        texts, pairs = _split_pairs([line for _, line in numbered])
        return texts, pairs, [number for number, _ in numbered]
    data, _ = load_user_files(test_file=args.input_file, text_columns=args.text_columns)
    return data["test"].text_a, data["test"].text_b, list(data["test"].ids)


def main(argv: list[str] | None = None) -> int:
    """Run `bigs predict` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 a failed write, 141 the reader of stdout
    closed it (`| head`); as `bigs predict`, 130 when interrupted (Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    from ..data.batching import Batching, encode
    from ..data.glue import Examples
    from ..modeling import FlaxBiGSForSequenceClassification
    from ..predict import predict_logits
    from ..tokenizer import BiGSTokenizer

    try:
        if args.padding is not None:
            from ..train.arguments import PADDING_ALIASES

            args.batching, args.pad_mode = PADDING_ALIASES[args.padding]
        if args.input_file is not None and args.texts:
            raise BiGSError("give texts as arguments or with --input_file, not both")
        output_format = args.output_format or ("tsv" if (args.output_file or "").endswith(".tsv") else "jsonl")
        if args.output_file is not None:
            from ..files import check_output_file

            check_output_file(args.output_file, "--output_file", args.overwrite, inputs=(args.input_file,))
        if args.batch_size < 1:
            raise BiGSError(f"--batch_size={args.batch_size}; expected a positive integer")
        texts, pairs, ids = _read_texts(args)
        if not texts:
            raise BiGSError("no texts to classify; give them as arguments or with --input_file")
        logging.getLogger("bigs").setLevel(logging.ERROR)   # what loading re-initialised is checked below
        model, report = FlaxBiGSForSequenceClassification.from_pretrained(args.model_name_or_path,
                                                                          output_loading_info=True)
        logging.getLogger("bigs").setLevel(logging.INFO)
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
        tokenizer.check_fits(model.config.vocab_size)
        data = encode(tokenizer, Examples(texts, pairs, None, list(range(len(texts)))), max_len)
        logits = predict_logits(model, data, batching=Batching(args.batching, max_len), batch_size=args.batch_size,
                                pad_id=tokenizer.pad_token_id, pad_mode=args.pad_mode)
    except BiGSError as error:
        print(f"bigs predict: error: {error}", file=sys.stderr)
        return 2
    rows = _rows(texts, pairs, ids, logits, model.config)
    lines = _tsv_lines(rows) if output_format == "tsv" else [json.dumps(row, ensure_ascii=False) for row in rows]
    if args.output_file is not None:
        from ..files import write_text

        try:
            write_text(args.output_file, "".join(line + "\n" for line in lines))
        except OSError as error:
            print(f"bigs predict: error: cannot write {args.output_file!r} ({error.strerror})", file=sys.stderr)
            return 1
        return 0
    try:
        for line in lines:
            print(line, flush=True)
    except BrokenPipeError:             # `bigs predict ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 128 + signal.SIGPIPE
    except OSError as error:            # a full disk, say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"bigs predict: error: cannot write the predictions ({error.strerror})", file=sys.stderr)
        return 1
    return 0


def _rows(texts, pairs, ids, logits, config) -> list[dict]:
    """One dict per text: its id (file input), the text(s), and the label with every label's
    probability, or the score (regression)."""
    id2label = config.id2label
    regression = config.problem_type == "regression" or config.num_labels == 1
    rows = []
    for i, text in enumerate(texts):
        row = {} if ids is None else {"id": ids[i]}
        row["text"] = text if pairs is None else [text, pairs[i]]
        if regression:
            row["score"] = round(float(logits[i, 0]), 4)
        else:
            probs = np.exp(logits[i] - logits[i].max())
            probs /= probs.sum()
            row["label"] = id2label[int(probs.argmax())]
            row["probabilities"] = {id2label[k]: round(float(p), 4) for k, p in enumerate(probs)}
        rows.append(row)
    return rows


def _tsv_lines(rows: list[dict]) -> list[str]:
    """A header, then one line per row: id, text(s), label or score, each label's probability.
    TABs and newlines inside a text become spaces, so every row stays one line of columns."""
    def clean(value) -> str:
        return " ".join(str(value).replace("\t", " ").splitlines())

    first = rows[0]
    pair = isinstance(first["text"], list)
    header = (["id"] if "id" in first else []) + (["text_a", "text_b"] if pair else ["text"])
    header += ["score"] if "score" in first else ["label", *(f"p_{name}" for name in first["probabilities"])]
    lines = ["\t".join(header)]
    for row in rows:
        cells = ([row["id"]] if "id" in row else []) + (row["text"] if pair else [row["text"]])
        cells += [row["score"]] if "score" in row else [row["label"], *row["probabilities"].values()]
        lines.append("\t".join(clean(cell) for cell in cells))
    return lines


if __name__ == "__main__":
    sys.exit(main())
