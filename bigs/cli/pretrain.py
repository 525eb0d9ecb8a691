"""`bigs pretrain` / `python pretrain.py`: masked-LM pretraining from HDF5 shards.

The original's flags work as written, e.g.

    python pretrain.py --output_dir BiGS_128/ --dataset_path shards/ --max_seq_length 128 \\
      --per_device_train_batch_size 131 --learning_rate 6e-4 --num_total_train_steps 100000

Rerunning the same command after a crash resumes from the last checkpoint in --output_dir.
The work is done by bigs.train.pretrain.run_pretraining; this module only parses flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from ..errors import BiGSError
from ..train.pretrain import PretrainArgs


def build_parser(prog: str = "bigs pretrain") -> argparse.ArgumentParser:
    d = PretrainArgs(output_dir="", dataset_path="")
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False,
                                     description="Pretrain BiGS with masked-LM on HDF5 shards (resumable).")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_path", required=True, help="folder of train_shard_*.hdf5 (bigs build-shards)")
    data.add_argument("--eval_dataset_path", help="held-out shards (default: test_shard_* beside the train "
                                                   "shards, or a `heldout` folder)")
    data.add_argument("--max_seq_length", type=int, default=d.max_seq_length)
    data.add_argument("--max_train_shards", type=int, help="use only the first n train shards")
    data.add_argument("--dynamic_masking", action="store_true", help="re-mask every epoch (BERT 80/10/10)")
    data.add_argument("--vocab_size", type=int, help="default: data_info.json beside the shards, else 30522")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", help="continue from a BiGS checkpoint (folder or hub id)")
    model.add_argument("--n_layers", type=int, default=d.n_layers)
    model.add_argument("--hidden_size", type=int, default=d.hidden_size)
    model.add_argument("--intermediate_size", type=int, default=d.intermediate_size)
    model.add_argument("--num_ssm", type=int, default=d.num_ssm)
    model.add_argument("--hidden_dropout_prob", type=float, default=d.hidden_dropout_prob)
    model.add_argument("--dtype", choices=("float32", "bfloat16"), default=d.dtype,
                       help="computation dtype (params and optimiser state stay float32)")

    train = parser.add_argument_group("training")
    train.add_argument("--output_dir", required=True, help="checkpoints, metrics.jsonl, TensorBoard, final model")
    train.add_argument("--overwrite_output_dir", action="store_true",
                       help="start over, deleting the checkpoints and logs in --output_dir")
    train.add_argument("--per_device_train_batch_size", type=int, default=d.per_device_train_batch_size)
    train.add_argument("--per_device_eval_batch_size", type=int, default=d.per_device_eval_batch_size)
    train.add_argument("--gradient_accumulation_steps", type=int, default=d.gradient_accumulation_steps)
    train.add_argument("--learning_rate", type=float, default=d.learning_rate)
    train.add_argument("--weight_decay", type=float, default=d.weight_decay)
    train.add_argument("--adam_beta1", type=float, default=d.adam_beta1)
    train.add_argument("--adam_beta2", type=float, default=d.adam_beta2)
    train.add_argument("--adam_epsilon", type=float, default=d.adam_epsilon)
    train.add_argument("--max_grad_norm", type=float, default=d.max_grad_norm, help="0 disables clipping")
    train.add_argument("--warmup_steps", type=int, default=d.warmup_steps)
    train.add_argument("--num_total_train_steps", type=int, default=d.num_total_train_steps)
    train.add_argument("--schedule_type", choices=("linear", "cosine", "constant"), default=d.schedule_type)
    train.add_argument("--cosine_schedule_alpha", type=float, default=d.cosine_schedule_alpha)
    train.add_argument("--ssm_lr_factor", type=float,
                       help="A_re, A_im, log_step get learning_rate * this and no weight decay")
    train.add_argument("--logging_steps", type=int, default=d.logging_steps)
    train.add_argument("--save_steps", type=int, default=d.save_steps)
    train.add_argument("--eval_steps", type=int, default=d.eval_steps, help="0: no evaluation")
    train.add_argument("--max_eval_batches", type=int, help="evaluate on at most n held-out batches")
    train.add_argument("--keep_checkpoints", type=int, default=d.keep_checkpoints)
    train.add_argument("--seed", type=int, default=d.seed)
    train.add_argument("--disable_progress_bar", action="store_true")
    train.add_argument("--report_to", choices=("tensorboard", "none"), default=d.report_to,
                       help="TensorBoard logs in output_dir/tensorboard, or none")

    devices = parser.add_argument_group("devices")
    devices.add_argument("--num_devices", type=int, help="use the first n devices (default: all)")
    devices.add_argument("--fsdp", type=int, default=d.fsdp,
                         help="shard params and optimiser state over this many devices (divides num_devices)")
    devices.add_argument("--mesh", help="DATAxFSDP, e.g. 4x1 (data parallel) or 2x2; overrides the two above")
    devices.add_argument("--coordinator_address", help="multi-host: host:port of process 0 (jax.distributed)")
    devices.add_argument("--num_processes", type=int, help="multi-host: number of processes")
    devices.add_argument("--process_id", type=int, help="multi-host: this process's index")
    return parser


def args_from_namespace(ns: argparse.Namespace) -> PretrainArgs:
    from ..train.sharding import parse_mesh

    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(PretrainArgs) if hasattr(ns, f.name)}
    if ns.mesh:
        values["num_devices"], values["fsdp"] = parse_mesh(ns.mesh)
    return PretrainArgs(**values)


def main(argv: list[str] | None = None, prog: str = "bigs pretrain") -> int:
    try:
        ns = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse has printed the message
        return int(exit_.code or 0)
    try:
        args = args_from_namespace(ns)
        if ns.coordinator_address or ns.num_processes:
            import jax

            jax.distributed.initialize(ns.coordinator_address, num_processes=ns.num_processes,
                                       process_id=ns.process_id)
        from ..train.pretrain import run_pretraining

        result = run_pretraining(args)
    except BiGSError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    evaluation = result["eval"]
    shown = f", eval loss {evaluation['loss']:.4f} accuracy {evaluation['accuracy']:.4f}" if evaluation else ""
    trained = f"train loss {result['loss']:.4f}" if result["loss"] is not None else "nothing left to train"
    print(f"step {result['step']}: {trained}{shown}; model in {ns.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
