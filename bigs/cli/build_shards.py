"""`bigs build-shards`: raw text -> masked-LM pretraining shards (HDF5, the original BiGS layout).

    bigs build-shards --input corpus/ --vocab_file vocab.txt --output_dir shards/ \\
      --max_seq_length 128 --no_next_sentence

The work is done by bigs.data.build.build_shards (and bigs.tokenizer.train_wordpiece with
--train_vocab_size); this module only parses flags.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..data.build import build_shards, check_build_arguments, check_output_dir
from ..errors import BiGSError
from ..tokenizer import train_wordpiece
from .common import ArgumentParser, HelpFormatter, add_overwrite_flag, interrupted, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs build-shards` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(
        prog="bigs build-shards", allow_abbrev=False, formatter_class=HelpFormatter,
        description="Build masked-LM pretraining shards (HDF5, the original BiGS layout) from raw text.",
    )
    parser.add_argument("--input", action="append", nargs="+", required=True,
                        help="text files or folders of *.txt/*.raw files; repeatable")
    parser.add_argument("--output_dir", required=True,
                        help="folder for the shards, vocab.txt and data_info.json")
    vocab = parser.add_mutually_exclusive_group(required=True)
    vocab.add_argument("--vocab_file", help="a BERT WordPiece vocab.txt")
    vocab.add_argument("--train_vocab_size", type=int, help="train a new WordPiece vocabulary of this size")
    parser.add_argument("--max_seq_length", type=int, default=128,
                        help="tokens per packed sequence, [CLS] and [SEP] included")
    parser.add_argument("--max_predictions_per_seq", type=int, default=20,
                        help="most masked tokens in one sequence")
    parser.add_argument("--masked_lm_prob", type=float, default=0.15,
                        help="share of a sequence's tokens that are masked (BERT: 80%% [MASK], 10%% random, "
                             "10%% kept)")
    parser.add_argument("--short_seq_prob", type=float, default=0.1,
                        help="chance that a sequence is packed to a random shorter length")
    parser.add_argument("--dupe_factor", type=int, default=1,
                        help="times each training document is packed, each time with its own masks")
    parser.add_argument("--heldout_fraction", type=float, default=0.01,
                        help="share of documents kept out for the test shards (at least one)")
    parser.add_argument("--examples_per_shard", type=int, default=16384, help="sequences per shard file")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document split, packing and masks")
    parser.add_argument("--no_next_sentence", action="store_true",
                        help="single segments [CLS] A [SEP], no next_sentence_labels (as BiGS was trained)")
    add_overwrite_flag(parser, help="replace an earlier build (shards, data_info.json, vocab.txt) in --output_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit code (2 with one `error:` line for bad data or values)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    inputs = [item for group in args.input for item in group]
    try:
        check_build_arguments(args.max_seq_length, args.masked_lm_prob, args.max_predictions_per_seq,
                              args.short_seq_prob, args.dupe_factor, args.heldout_fraction, args.examples_per_shard,
                              prefix="--")      # before a vocabulary is trained
        with tempfile.TemporaryDirectory(prefix="bigs_vocab_") as scratch:
            if args.train_vocab_size is not None:
                check_output_dir(Path(args.output_dir), args.overwrite)  # fail before training, not after
                # trained aside: build_shards writes it into output_dir once the input is known to hold text
                tokenizer = train_wordpiece(inputs, args.train_vocab_size, scratch)
            else:
                tokenizer = args.vocab_file
            info = build_shards(
                inputs, args.output_dir, tokenizer,
                max_seq_length=args.max_seq_length, masked_lm_prob=args.masked_lm_prob,
                max_predictions_per_seq=args.max_predictions_per_seq, short_seq_prob=args.short_seq_prob,
                dupe_factor=args.dupe_factor, heldout_fraction=args.heldout_fraction,
                examples_per_shard=args.examples_per_shard, seed=args.seed,
                next_sentence=not args.no_next_sentence, overwrite=args.overwrite,
                tokenizer_source=(None if args.train_vocab_size is None else
                                  f"WordPiece trained on the input (--train_vocab_size {args.train_vocab_size})"),
            )
    except BiGSError as error:
        print(f"bigs build-shards: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("bigs build-shards", "run it again with --overwrite to start over (each shard written "
                                                "is complete)")
    for split in ("train", "test"):
        print(f"{split}: {info['num_documents'][split]} documents -> {info['num_examples'][split]} examples "
              f"in {info['num_shards'][split]} shards, {info['num_masked_tokens'][split]} masked tokens")
    print(f"wrote {args.output_dir} (vocab_size {info['vocab_size']}, "
          f"max_seq_length {info['max_seq_length']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
