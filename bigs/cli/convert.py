"""`bigs convert`: a checkpoint folder's weights from Flax files to PyTorch files, or back.

    bigs convert JunxiongWang/BiGS_512_MNLI BiGS_512_MNLI_torch            # -> model.safetensors
    bigs convert BiGS_512_MNLI_torch BiGS_512_MNLI_flax --to flax          # -> flax_model.msgpack

Needs neither jax nor torch (bigs.convert does the work, with numpy).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BiGSError
from .common import ArgumentParser, HelpFormatter, add_overwrite_flag, interrupted, report, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs convert` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog="bigs convert", allow_abbrev=False, formatter_class=HelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", help="checkpoint folder or hub id (config.json + flax_model.msgpack "
                                       "or model.safetensors)")
    parser.add_argument("destination", help="folder to write; made if missing")
    parser.add_argument("--to", choices=("torch", "flax"), default="torch",
                        help="torch: model.safetensors in the PyTorch layout; flax: flax_model.msgpack "
                             "(the original's format)")
    add_overwrite_flag(parser, help="replace config.json, the weights and tokenizer files already in destination")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit) of a hub id")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `bigs convert` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    from ..convert import convert

    try:
        written = convert(args.source, args.destination, to=args.to, overwrite=args.overwrite,
                          revision=args.revision)
    except BiGSError as error:
        return report("bigs convert", error)
    except KeyboardInterrupt:
        return interrupted("bigs convert", "each file is whole or absent: run the command again")
    print(f"wrote {', '.join(written)}")
    return 0
