"""`bigs export-onnx`: a checkpoint folder as an ONNX model, for onnxruntime.

    bigs export-onnx --model_name_or_path bigs_demo --output bigs_demo.onnx

The folder's architecture (config.json "architectures": a head, or the encoder) is exported
by bigs.torch.export: inputs input_ids, attention_mask, token_type_ids (int64, dynamic batch
and length up to max_position_embeddings), the head's outputs in order. Needs the onnx
extra: pip install "bigs[onnx]".
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from ..errors import BiGSError, ConfigError
from ..files import check_output_file
from .common import ArgumentParser, HelpFormatter, add_overwrite_flag, interrupted, report, setup_logging


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `bigs export-onnx` (documents every flag; used by --help and the docs tests)."""
    parser = ArgumentParser(prog="bigs export-onnx", allow_abbrev=False, formatter_class=HelpFormatter,
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model_name_or_path", required=True, help="checkpoint folder or hub id")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument("--pad_mode", choices=("reference", "exact"),
                        help="fixed in the graph (default: the checkpoint's config)")
    add_overwrite_flag(parser, help="replace --output if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run `bigs export-onnx` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    prog = "bigs export-onnx"
    try:
        check_output_file(args.output, "--output", args.overwrite)
        try:
            import onnxscript  # noqa: F401  (torch's ONNX exporter needs it)

            import bigs.torch as bt
            from bigs.torch.export import export_onnx
        except ImportError as error:
            raise ConfigError(f"export-onnx needs the onnx extra ({error.name} is missing): "
                              "pip install 'bigs[onnx]'") from None
        from ..config import BiGSConfig

        config = bt.BiGSTransformersConfig.from_dict(BiGSConfig.from_pretrained(args.model_name_or_path).to_dict())
        name = (config.architectures or ["BiGSModel"])[0]
        model_class = bt.MODEL_CLASSES.get(name, bt.BiGSModel)
        model = model_class.from_pretrained(args.model_name_or_path)
        for noisy in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # the exporter's own notes, not the user's concern
            outputs = export_onnx(model, args.output, pad_mode=args.pad_mode)
    except BiGSError as error:
        return report(prog, error)
    except KeyboardInterrupt:
        return interrupted(prog, "nothing was written")
    print(f"wrote {args.output}: {model_class.__name__}, inputs input_ids, attention_mask, token_type_ids; "
          f"outputs {', '.join(outputs)}")
    return 0

