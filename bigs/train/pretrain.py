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
from .loop import Batch, Task, TrainingArguments, train
from .optim import make_optimizer, make_schedule


@dataclasses.dataclass(kw_only=True)
class PretrainArgs(TrainingArguments):
    """Everything a pretraining run depends on; the CLI flags map one to one onto these
    (the original's `--num_total_train_steps`, `--keep_checkpoints` and
    `--disable_progress_bar` are aliases of max_steps, save_total_limit and disable_tqdm)."""

    # a folder of train_shard_*.hdf5 files (or one shard file)
    dataset_path: str
    # held-out shards; None: the test_shard_* files beside the train shards, or a `heldout` folder
    eval_dataset_path: str | None = None
    # sequence length of the model (max_position_embeddings); shards may not be longer
    max_seq_length: int = 128
    # lr multiplier for the SSM rates (A_re, A_im, log_step; not decayed); None: plain groups
    ssm_lr_factor: float | None = None
    # model shape (ignored with model_name_or_path, whose config is used)
    n_layers: int = 23
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_ssm: int = 64
    hidden_dropout_prob: float = 0.1
    # None: data_info.json beside the shards, else BERT uncased (30522)
    vocab_size: int | None = None
    # continue from a Hugging Face-format BiGS checkpoint (folder or hub id)
    model_name_or_path: str | None = None
    # re-mask every epoch instead of using the shards' static masks
    dynamic_masking: bool = False
    max_train_shards: int | None = None
    # evaluate on at most this many held-out batches (None: all of them)
    max_eval_batches: int | None = None
    # the original pretrain.py's defaults (shared/SPEC.md)
    seed: int = 0
    max_steps: int = 100_000
    per_device_train_batch_size: int = 131
    per_device_eval_batch_size: int = 131
    learning_rate: float = 6e-4
    schedule_type: str = "cosine"
    cosine_schedule_alpha: float = 0.1
    warmup_steps: int = 2000
    weight_decay: float = 0.05
    adam_beta2: float = 0.98
    save_steps: int | None = 1000
    eval_steps: int | None = 1000
    save_total_limit: int = 3

    def validate(self) -> None:
        super().validate()
        for name in ("max_seq_length", "max_steps", "save_steps", "n_layers", "hidden_size", "intermediate_size",
                     "num_ssm"):
            value = getattr(self, name)
            if value is None or value < 1:
                raise ConfigError(f"--{name}={value}; expected a positive integer")
        if self.ssm_lr_factor is not None and self.ssm_lr_factor <= 0:
            raise ConfigError(f"--ssm_lr_factor={self.ssm_lr_factor}; expected > 0")
        if not Path(self.dataset_path).exists():
            raise DataError(f"--dataset_path {self.dataset_path!r} does not exist; expected a folder of shards")


def model_config(args: PretrainArgs, vocab_size: int) -> BiGSConfig:
    """The model's config: the checkpoint's with model_name_or_path, else from the size flags."""
    if args.model_name_or_path:
        return BiGSConfig.from_pretrained(args.model_name_or_path)
    return BiGSConfig(
        vocab_size=vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.n_layers,
        intermediate_size=args.intermediate_size, num_ssm=args.num_ssm,
        hidden_dropout_prob=args.hidden_dropout_prob, max_position_embeddings=args.max_seq_length,
    )


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
        batches = self.eval_data.iterate(self.eval_rows, num_epochs=1, drop_remainder=False)
        for index, (batch, _) in enumerate(batches):
            if self.args.max_eval_batches is not None and index >= self.args.max_eval_batches:
                break
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
        raise DataError(f"shards hold sequences of length {length}; expected at most --max_seq_length="
                        f"{config.max_position_embeddings}")
    if int(first_shard["masked_lm_ids"].max(initial=0)) >= config.vocab_size:
        raise DataError(f"shard ids reach {int(first_shard['masked_lm_ids'].max())}; expected < vocab_size="
                        f"{config.vocab_size} (pass --vocab_size)")
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
