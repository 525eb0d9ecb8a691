"""`bigs embed`: a sentence embedding for each line of a file.

    bigs embed --model_name_or_path bigs_demo --input sentences.txt --output vectors.npy
    bigs embed --model_name_or_path bigs_demo --input - --output vectors.jsonl < sentences.txt

One vector per input line, in order (an empty line gets the vector of an empty text): the mean
of the model's last hidden states over the line's real tokens, with exact padding (a line's
vector does not depend on the lines batched with it; --pad_mode reference gives the
original's behaviour). .npy writes a [lines, hidden_size] float32 array, .jsonl one JSON list
a line. Any checkpoint works: a head checkpoint's encoder is used.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import BiGSError, ConfigError
from ..files import check_output_file
from .common import (ArgumentParser, HelpFormatter, add_overwrite_flag, add_progress_flag, interrupted, report,
                     setup_logging)

FORMATS = (".npy", ".jsonl")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs embed` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog="bigs embed", allow_abbrev=False, formatter_class=HelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True, help="checkpoint folder or hub id (with a tokenizer)")
    parser.add_argument("--input", required=True,
                        help="text file, one text a line (UTF-8; other text is read as Windows-1252 with a warning); "
                             "- reads stdin")
    parser.add_argument("--output", required=True, help="OUT.npy ([lines, hidden] float32) or OUT.jsonl")
    parser.add_argument("--max_seq_length", type=int, help="tokens a line keeps (default: max_position_embeddings)")
    parser.add_argument("--batch_size", type=int, default=32, help="lines per batch")
    parser.add_argument("--pad_mode", choices=("exact", "reference"), default="exact",
                        help="exact: a line's vector is independent of its batch; reference: the original's")
    add_overwrite_flag(parser, help="replace --output if it exists")
    add_progress_flag(parser)
    return parser


def _read_lines(path: str) -> list[str]:
    from ..data.text import read_text

    return read_text(path).splitlines()       # "-": stdin, decoded as files are


def main(argv: list[str] | None = None) -> int:
    """Run `bigs embed` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    prog = "bigs embed"
    try:
        if not args.output.endswith(FORMATS):
            raise ConfigError(f"--output {args.output!r} must end in .npy or .jsonl")
        check_output_file(args.output, "--output", args.overwrite, inputs=(args.input,))
        if args.batch_size < 1:
            raise ConfigError(f"--batch_size={args.batch_size}; expected a positive integer")
        if args.max_seq_length is not None and args.max_seq_length < 3:
            raise ConfigError(f"--max_seq_length={args.max_seq_length}; expected at least 3 "
                              "([CLS], [SEP] and one token)")
        texts = _read_lines(args.input)
        if not texts:
            raise ConfigError(f"--input {args.input!r} holds no lines")
        from ..embed import embed_texts
        from ..modeling import FlaxBiGSModel
        from ..tokenizer import BiGSTokenizer

        logging.getLogger("bigs").setLevel(logging.ERROR)   # a head checkpoint's unused head is expected
        model = FlaxBiGSModel.from_pretrained(args.model_name_or_path)
        logging.getLogger("bigs").setLevel(logging.INFO)
        tokenizer = BiGSTokenizer.from_pretrained(args.model_name_or_path)
        tokenizer.check_fits(model.config.vocab_size)
        limit = model.config.max_position_embeddings
        if args.max_seq_length is not None and args.max_seq_length > limit:
            raise ConfigError(f"--max_seq_length={args.max_seq_length} is longer than the checkpoint's "
                              f"max_position_embeddings={limit}")
        from tqdm import tqdm

        with tqdm(total=len(texts), unit="line", disable=args.disable_tqdm or None, file=sys.stderr) as bar:
            vectors = embed_texts(model, tokenizer, texts, max_length=args.max_seq_length,
                                  batch_size=args.batch_size, pad_mode=args.pad_mode, progress=bar.update)
        _write(args.output, vectors)
    except BiGSError as error:
        return report(prog, error)
    except KeyboardInterrupt:
        return interrupted(prog, "nothing was written")
    print(f"wrote {args.output}: {vectors.shape[0]} vectors of {vectors.shape[1]}", file=sys.stderr)
    return 0


def _write(path: str, vectors) -> None:
    import numpy as np

    from ..files import atomic_writer, write_text

    if path.endswith(".npy"):
        with atomic_writer(path) as tmp, open(tmp, "wb") as f:
            np.save(f, vectors)
    else:
        write_text(path, "".join(json.dumps([round(float(x), 7) for x in row]) + "\n" for row in vectors))
