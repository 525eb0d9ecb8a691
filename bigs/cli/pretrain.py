"""`bigs pretrain` / `python pretrain.py`: masked-LM pretraining from HDF5 shards.

The original's flags work as written, e.g.

    python pretrain.py --output_dir BiGS_128/ --dataset_path shards/ --max_seq_length 128 \\
      --per_device_train_batch_size 131 --learning_rate 6e-4 --num_total_train_steps 100000

Rerunning the same command after a crash resumes from the last checkpoint in --output_dir.
The work is done by bigs.train.pretrain.run_pretraining; this module only parses flags.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import BiGSError
from ..train.arguments import PretrainArgs
from .common import (ArgumentParser, HelpFormatter, add_training_flags, arguments_from, interrupted, report,
                     setup_logging, spellings)

# The original pretrain.py's spelling of a shared flag (the others are common.ALIASES).
ALIASES = {"max_steps": "num_total_train_steps"}


def build_parser(prog: str = "bigs pretrain") -> argparse.ArgumentParser:
    """The argparse parser of `bigs pretrain` (documents every flag; used by --help and the docs tests)."""
    d = PretrainArgs(output_dir="", dataset_path="")
    parser = ArgumentParser(prog=prog, allow_abbrev=False,
                                     formatter_class=HelpFormatter,
                                     description="Pretrain BiGS with masked-LM on HDF5 shards (resumable).")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_path", required=True, help="folder of train_shard_*.hdf5 (bigs build-shards)")
    data.add_argument("--eval_dataset_path", help="held-out shards (default: test_shard_* beside the train "
                                                   "shards, or a `heldout` folder)")
    data.add_argument("--max_seq_length", type=int, default=d.max_seq_length,
                      help="model length (max_position_embeddings); shards may not be longer")
    data.add_argument("--max_train_shards", type=int, help="use only the first n train shards")
    data.add_argument("--dynamic_masking", action="store_true", help="re-mask every epoch (BERT 80/10/10)")
    data.add_argument("--vocab_size", type=int, help="default: data_info.json beside the shards, else 30522")
    data.add_argument("--max_eval_batches", type=int,
                      help="evaluate on at most n x per_device_eval_batch_size held-out sequences (the same "
                           "sequences on any number of devices)")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", help="continue from a BiGS checkpoint (folder or hub id); its config "
                                                    "fixes the size, so size flags must match it or be left out")
    model.add_argument(*spellings("n_layers"), dest="n_layers", type=int, help="BiGS layers (default: 23)")
    model.add_argument("--hidden_size", type=int, help="model width (default: 1024)")
    model.add_argument("--intermediate_size", type=int, help="gate width (default: 3072)")
    model.add_argument("--num_ssm", type=int, help="complex states per SSM (default: 64)")
    model.add_argument("--hidden_dropout_prob", type=float, help="dropout after the embeddings (default: 0.1)")
    model.add_argument("--ssm_lr_factor", type=float,
                       help="A_re, A_im, log_step get learning_rate * this and no weight decay")

    add_training_flags(parser, d, aliases=ALIASES, helps={
        "resume": "continue the run in output_dir (also without this flag: rerunning the command continues it)",
        "eval_steps": "evaluate on the held-out shards every n steps and at the end; 0: never"})
    hosts = parser.add_argument_group("multi-host")
    hosts.add_argument("--coordinator_address", help="host:port of process 0 (jax.distributed)")
    hosts.add_argument("--num_processes", type=int, help="number of processes")
    hosts.add_argument("--process_id", type=int, help="this process's index")
    return parser


def args_from_namespace(ns: argparse.Namespace) -> PretrainArgs:
    """The PretrainArgs of the parsed flags (--mesh becomes num_devices and fsdp)."""
    return arguments_from(ns, PretrainArgs)


def main(argv: list[str] | None = None, prog: str = "bigs pretrain") -> int:
    """Run `bigs pretrain` with `argv` (default sys.argv[1:]); returns the exit status: 0 done, 2 a
    refused input (one `error:` line on stderr), 1 training diverged (non-finite loss), 130
    interrupted (Ctrl-C)."""
    try:
        ns = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse has printed the message
        return int(exit_.code or 0)
    setup_logging()
    try:
        args = args_from_namespace(ns)
        if ns.coordinator_address or ns.num_processes:
            import jax

            jax.distributed.initialize(ns.coordinator_address, num_processes=ns.num_processes,
                                       process_id=ns.process_id)
        from ..train.pretrain import run_pretraining

        result = run_pretraining(args)
    except BiGSError as error:
        return report(prog, error)
    except KeyboardInterrupt:
        return interrupted(prog, "run the same command again to continue from the latest checkpoint")
    evaluation = result["eval"]
    shown = f", eval loss {evaluation['loss']:.4f} accuracy {evaluation['accuracy']:.4f}" if evaluation else ""
    trained = f"train loss {result['loss']:.4f}" if result["loss"] is not None else "nothing left to train"
    print(f"step {result['step']}: {trained}{shown}; model in {ns.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
