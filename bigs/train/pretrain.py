"""Masked-LM pretraining from HDF5 shards.

    run_pretraining(PretrainArgs(output_dir="out", dataset_path="shards/", ...))

`run_pretraining` reads the shards (bigs.data.shards), builds or loads the model, and trains
it with the shared loop (loop.py) and this module's `PretrainTask`: its batches (resumable
positions in the shard stream), its loss (MLM cross-entropy summed over the labelled tokens,
so an update is normalised by all of its labelled tokens), its held-out evaluation and its
export (the final model). Rerunning the same command continues the run in output_dir.

output_dir holds, beside the loop's files (output_dir.py):
  config.json, flax_model.msgpack, model.safetensors, vocab.txt
                          the final model, loadable with FlaxBiGSForMaskedLM.from_pretrained
                          and by `bigs glue --model_name_or_path output_dir`
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import BiGSConfig
from ..data.masking import labels_from_positions
from ..data.shards import DataPosition, ShardDataset
from ..errors import ConfigError, DataError, NonFiniteError
from ..files import check_writable_folder
from ..modeling import FlaxBiGSForMaskedLM, FlaxBiGSForMaskedLMModule
from . import sharding
from .arguments import SIZE_FLAGS, PretrainArgs
from .loop import Batch, Task, train
from .optim import make_optimizer, make_schedule


def model_config(args: PretrainArgs, vocab_size: int) -> BiGSConfig:
    """The model's config: the checkpoint's with model_name_or_path, else from the size flags
    (SIZE_FLAGS defaults for those not given). Raises ConfigError when a size flag or
    --vocab_size given with model_name_or_path disagrees with the checkpoint, naming both."""
    if args.model_name_or_path:
        config = BiGSConfig.from_pretrained(args.model_name_or_path)
        given = [(f"--{flag}", getattr(args, flag), key) for flag, key, _ in SIZE_FLAGS if getattr(args, flag) is not None]
        if args.vocab_size is not None:
            given.append(("--vocab_size", args.vocab_size, "vocab_size"))
        wrong = [f"{flag}={value} (the checkpoint has {key}={getattr(config, key)})" for flag, value, key in given
                 if value != getattr(config, key)]
        if wrong:
            raise ConfigError(f"{'; '.join(wrong)}: --model_name_or_path {args.model_name_or_path} fixes the model's "
                              "size; drop these flags, or train a new model without --model_name_or_path")
        return config
    sizes = {key: default if getattr(args, flag) is None else getattr(args, flag) for flag, key, default in SIZE_FLAGS}
    return BiGSConfig(vocab_size=vocab_size, max_position_embeddings=args.max_seq_length, **sizes)


def check_vocabulary(train_data: ShardDataset, first_shard: dict[str, np.ndarray], config: BiGSConfig,
                     source: str) -> None:
    """Refuse shards whose tokenizer or ids do not fit the model's vocabulary, naming both
    sizes and where the model's comes from (`source`). DataError."""
    info = train_data.data_info
    if info is not None and train_data.special_tokens.vocab_size > config.vocab_size:
        raise DataError(f"the shards' tokenizer has {train_data.special_tokens.vocab_size} tokens ({info}); "
                        f"the model's vocabulary has {config.vocab_size} ({source})")
    for name in ("input_ids", "masked_lm_ids"):
        largest = int(first_shard[name].max(initial=0))
        if largest >= config.vocab_size:
            raise DataError(f"shard {name} reach {largest}; the model's vocabulary has {config.vocab_size} tokens "
                            f"({source}), so ids must be < {config.vocab_size}")


def model_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A shard batch -> the arrays the loss reads (labels -100 where unmasked)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["input_mask"],
            "token_type_ids": batch["segment_ids"], "labels": labels_from_positions(batch)}


def mlm_sums(model, params, batch, max_predictions: int, dropout_rng=None) -> dict[str, jax.Array]:
    """{"loss": summed cross-entropy, "count": labelled tokens, "accuracy": correct ones} of one
    [rows, length] batch; with a dropout_rng, in training mode."""
    positions = jnp.broadcast_to(jnp.arange(batch["input_ids"].shape[1]), batch["input_ids"].shape)
    out = model.module.apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], positions,
        batch["labels"], max_predictions=max_predictions, deterministic=dropout_rng is None,
        rngs={} if dropout_rng is None else {"dropout": dropout_rng}, method=FlaxBiGSForMaskedLMModule.mlm_loss)
    return {"loss": out.loss * out.count, "count": out.count, "accuracy": out.correct}


def make_eval_step(model: FlaxBiGSForMaskedLM, max_predictions: int):
    """(params, batch) -> (summed loss, correct, count) over one [B, L] batch."""

    def eval_step(params, batch):
        sums = mlm_sums(model, params, batch, max_predictions)
        return sums["loss"], sums["accuracy"], sums["count"]

    return eval_step


def default_eval_path(dataset_path: str) -> str | None:
    """Held-out shards for a train set: test_shard_* files beside it, else a `heldout` folder
    inside or beside it; None if there are none."""
    folder = Path(_folder(dataset_path))
    if any(folder.glob("*test*.hdf5")) or any(folder.glob("*test*.h5")):
        return str(folder)
    for candidate in (folder / "heldout", folder.parent / "heldout"):
        if candidate.is_dir():
            return str(candidate)
    return None


def _pad_rows(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    missing = rows - len(arrays["input_ids"])
    if missing == 0:
        return arrays
    fill = {"input_ids": 0, "attention_mask": 1, "token_type_ids": 0, "labels": -100}
    return {name: np.concatenate([values, np.full((missing, *values.shape[1:]), fill[name], values.dtype)])
            for name, values in arrays.items()}


class PretrainTask(Task):
    """MLM on shard batches; exports the final model (with the shards' vocab.txt)."""

    unit = "tok"
    keep_best = False

    def __init__(self, args: PretrainArgs, model: FlaxBiGSForMaskedLM, train_data: ShardDataset,
                 eval_data: ShardDataset | None, max_predictions: int, mesh, params_sharding):
        self.args, self.model, self.train_data, self.eval_data = args, model, train_data, eval_data
        self.max_predictions, self.mesh = max_predictions, mesh
        self.rows = args.per_device_train_batch_size * mesh.devices.size
        self.eval_rows = args.per_device_eval_batch_size * mesh.devices.size
        self.eval_sharding = sharding.batch_sharding(mesh)
        self.eval_step = jax.jit(make_eval_step(model, max_predictions),
                                 in_shardings=(params_sharding, self.eval_sharding),
                                 out_shardings=sharding.replicated(mesh))

    def loss(self, params, micro, dropout_rng):
        return mlm_sums(self.model, params, micro, self.max_predictions, dropout_rng)

    def batches(self, start_step: int, position: dict | None) -> Iterator[Batch]:
        accumulation = self.args.gradient_accumulation_steps
        start = DataPosition.from_dict(position) if position is not None else None
        for batch, next_position in self.train_data.iterate(self.rows * accumulation, start=start):
            arrays = {name: values.reshape(accumulation, self.rows, *values.shape[1:])
                      for name, values in model_inputs(batch).items()}
            yield Batch(arrays, next_position.to_dict(), int(batch["input_mask"].sum()))

    def evaluate(self, params) -> dict[str, Any]:
        """MLM loss and accuracy over the held-out shards (a last partial batch is padded with
        rows that have no labels, so it counts exactly)."""
        if self.eval_data is None:
            return {}
        total_loss, correct, count = 0.0, 0, 0
        # --max_eval_batches counts batches of one device, so the examples are the same on any number
        limit = (None if self.args.max_eval_batches is None
                 else self.args.max_eval_batches * self.args.per_device_eval_batch_size)
        seen = 0
        for batch, _ in self.eval_data.iterate(self.eval_rows, num_epochs=1, drop_remainder=False):
            if limit is not None:
                if seen >= limit:
                    break
                batch = {name: values[:limit - seen] for name, values in batch.items()}
            seen += len(batch["input_ids"])
            arrays = _pad_rows(model_inputs(batch), self.eval_rows)
            loss_sum, batch_correct, batch_count = self.eval_step(params, sharding.global_batch(arrays, self.eval_sharding))
            total_loss += float(loss_sum)
            correct += int(batch_correct)
            count += int(batch_count)
        if not np.isfinite(total_loss):
            raise NonFiniteError(f"evaluation on {self.eval_data.files[0].parent}: the held-out loss is {total_loss}; "
                                 "the parameters hold NaN or infinity")
        return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "masked_tokens": count}

    def export(self, params) -> None:
        self.model.save_pretrained(self.args.output_dir, params=params, tokenizer=_tokenizer_near(self.args.dataset_path))


def run_settings(args: PretrainArgs, config: BiGSConfig, train_data: ShardDataset, mesh) -> dict[str, Any]:
    """What a resumed pretraining run must agree with, in the order a difference is reported."""
    start = args.model_name_or_path
    if start is not None and os.path.isdir(start):
        start = os.path.abspath(start)
    return {
        "command": "pretrain",
        "model": config.to_dict(),
        "data": {"shards": [f"{path.name} ({path.stat().st_size} bytes)" for path in train_data.files],
                 "max_train_shards": args.max_train_shards, "dynamic_masking": args.dynamic_masking},
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "num_devices": int(mesh.devices.size), "fsdp": args.fsdp,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "max_seq_length": args.max_seq_length,
        "max_steps": args.max_steps,
        "seed": args.seed,
        "model_name_or_path": start,
        "training": {name: getattr(args, name) for name in (
            "learning_rate", "schedule_type", "cosine_schedule_alpha", "warmup_steps", "weight_decay", "adam_beta1",
            "adam_beta2", "adam_epsilon", "max_grad_norm", "ssm_lr_factor", "dtype")},
    }


def run_pretraining(args: PretrainArgs) -> dict[str, Any]:
    """Train (continuing the run in output_dir if there is one), evaluate, export.

    Returns {step, loss (the last logged train loss, None if no step ran), eval (the last
    evaluation), num_devices, sharded_param_leaves}. Raises a BiGSError subclass, before
    writing anything, for bad flags, data or an output_dir holding another run;
    NonFiniteError if training diverges.
    """
    args.validate()
    check_writable_folder(args.output_dir)
    train_data = ShardDataset(args.dataset_path, args.max_train_shards, seed=args.seed,
                              dynamic_masking=args.dynamic_masking)
    vocab_size = args.vocab_size or train_data.special_tokens.vocab_size
    config = model_config(args, vocab_size)
    first_shard = train_data.load_shard(0, 0)
    length, max_predictions = first_shard["input_ids"].shape[1], first_shard["masked_lm_positions"].shape[1]
    if length > config.max_position_embeddings:
        where = (f"the max_position_embeddings of {args.model_name_or_path}" if args.model_name_or_path
                 else "--max_seq_length")
        raise DataError(f"shards hold sequences of length {length}; the model takes at most "
                        f"{config.max_position_embeddings} ({where})")
    source = (f"config.json of {args.model_name_or_path}" if args.model_name_or_path else
              "--vocab_size" if args.vocab_size else "data_info.json beside the shards, else BERT uncased's 30522")
    check_vocabulary(train_data, first_shard, config, source)
    mesh = sharding.make_mesh(args.num_devices, args.fsdp)

    schedule = make_schedule(args.schedule_type, args.learning_rate, args.warmup_steps, args.max_steps,
                             args.cosine_schedule_alpha)
    model = FlaxBiGSForMaskedLM(config, seed=args.seed, dtype=args.dtype, _do_init=False)
    initial_params = None
    if args.model_name_or_path:
        initial_params = FlaxBiGSForMaskedLM.from_pretrained(args.model_name_or_path, dtype=args.dtype).params
    tx = make_optimizer(schedule, model.init_shapes(), weight_decay=args.weight_decay, b1=args.adam_beta1,
                        b2=args.adam_beta2, eps=args.adam_epsilon, max_grad_norm=args.max_grad_norm or None,
                        ssm_lr_factor=args.ssm_lr_factor)
    params_sharding = sharding.tree_shardings(model.init_shapes(), mesh)

    eval_path = (args.eval_dataset_path or default_eval_path(args.dataset_path)) if args.eval_steps else None
    eval_data = None
    if eval_path is not None:
        eval_data = ShardDataset(eval_path, seed=args.seed, split="test" if eval_path == _folder(args.dataset_path)
                                 else None, shuffle=False, special_tokens=train_data.special_tokens)
    task = PretrainTask(args, model, train_data, eval_data, max_predictions, mesh, params_sharding)
    loop_args = dataclasses.replace(args, eval_steps=args.eval_steps if eval_data is not None else 0)
    summary = train(task, loop_args, model=model, tx=tx, schedule=schedule, mesh=mesh,
                    settings=run_settings(args, config, train_data, mesh), params=initial_params)
    sharded = sum(any(axis is not None for axis in s.spec) for s in jax.tree.leaves(params_sharding))
    return {"step": summary["step"], "loss": (summary["train"] or {}).get("loss"), "eval": summary["last_eval"],
            "num_devices": int(mesh.devices.size), "sharded_param_leaves": sharded}


def _folder(dataset_path: str) -> str:
    source = Path(dataset_path)
    return str(source if source.is_dir() else source.parent)


def _tokenizer_near(dataset_path: str):
    """The BiGSTokenizer of the vocab.txt beside the shards, if build_shards wrote one."""
    from ..tokenizer import BiGSTokenizer

    vocab = Path(_folder(dataset_path)) / "vocab.txt"
    return BiGSTokenizer.from_vocab(str(vocab)) if vocab.is_file() else None
