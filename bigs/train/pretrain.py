"""Masked-LM pretraining from HDF5 shards: train state, train step, evaluation, the loop.

    run_pretraining(PretrainArgs(output_dir="out", dataset_path="shards/", ...))

One train step is one optimiser update on a global batch of
`per_device_train_batch_size * num_devices * gradient_accumulation_steps` sequences
(the micro-batches are scanned inside the step). The step is a pure function of
(state, batch): its dropout key is fold_in(fold_in(key(seed), step), micro_batch), so a run
resumed from a checkpoint (params, optimiser state, step, data position) continues with
exactly the numbers an uninterrupted run would have produced.

output_dir holds:
  checkpoints/<step>/     training checkpoints (TrainCheckpointer), the last `keep_checkpoints`
  run_config.json         the model config and the settings a resume must agree with
  metrics.jsonl           one JSON line per logged step / evaluation (rewritten on resume to
                          end at the restored step, so it always reads as one trajectory)
  tensorboard/            TensorBoard logs
  config.json, flax_model.msgpack, model.safetensors, vocab.txt
                          the final model, loadable with FlaxBiGSForMaskedLM.from_pretrained
                          and by `bigs glue --model_name_or_path output_dir`
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config import BiGSConfig
from ..data.pretraining import DataPosition, ShardDataset, labels_from_positions
from ..errors import ConfigError, DataError
from ..modeling import FlaxBiGSForMaskedLM, FlaxBiGSForMaskedLMModule
from . import sharding
from .checkpointing import TrainCheckpointer
from .optim import make_optimizer, make_schedule
from .progress import Progress

RUN_CONFIG = "run_config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"


@dataclasses.dataclass
class PretrainArgs:
    """Everything a pretraining run depends on; the CLI flags map one to one onto these."""

    # Where checkpoints, logs and the final model go.
    output_dir: str
    # A folder of train_shard_*.hdf5 files (or one shard file).
    dataset_path: str
    # Held-out shards; None: the test_shard_* files beside the train shards, or a `heldout` folder.
    eval_dataset_path: str | None = None
    # Sequence length of the model (max_position_embeddings); shards may not be longer.
    max_seq_length: int = 128
    per_device_train_batch_size: int = 131
    per_device_eval_batch_size: int = 131
    gradient_accumulation_steps: int = 1
    learning_rate: float = 6e-4
    weight_decay: float = 0.05
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    warmup_steps: int = 2000
    num_total_train_steps: int = 100_000
    schedule_type: str = "cosine"
    cosine_schedule_alpha: float = 0.1
    # lr multiplier for the SSM rates (A_re, A_im, log_step; not decayed); None: plain groups.
    ssm_lr_factor: float | None = None
    # Model shape (ignored with model_name_or_path, whose config is used).
    n_layers: int = 23
    hidden_size: int = 1024
    intermediate_size: int = 3072
    num_ssm: int = 64
    hidden_dropout_prob: float = 0.1
    # None: data_info.json beside the shards, else BERT uncased (30522).
    vocab_size: int | None = None
    # Continue from a Hugging Face-format BiGS checkpoint (folder or hub id).
    model_name_or_path: str | None = None
    dtype: str = "float32"
    # Re-mask every epoch instead of using the shards' static masks.
    dynamic_masking: bool = False
    max_train_shards: int | None = None
    logging_steps: int = 100
    save_steps: int = 1000
    # Evaluate every this many steps and at the end; 0: never.
    eval_steps: int = 1000
    # Evaluate on at most this many held-out batches (None: all of them).
    max_eval_batches: int | None = None
    keep_checkpoints: int = 3
    # Start from scratch even if output_dir holds checkpoints (they are deleted).
    overwrite_output_dir: bool = False
    seed: int = 0
    # Devices: the first num_devices (None: all), as a [num_devices // fsdp, fsdp] mesh.
    num_devices: int | None = None
    fsdp: int = 1
    disable_progress_bar: bool = False
    # "tensorboard": write TensorBoard logs to output_dir/tensorboard; "none": do not.
    report_to: str = "tensorboard"


# ------------------------------------------------------------------------------- state
def model_config(args: PretrainArgs, vocab_size: int) -> BiGSConfig:
    if args.model_name_or_path:
        return BiGSConfig.from_pretrained(args.model_name_or_path)
    return BiGSConfig(
        vocab_size=vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.n_layers,
        intermediate_size=args.intermediate_size, num_ssm=args.num_ssm,
        hidden_dropout_prob=args.hidden_dropout_prob, max_position_embeddings=args.max_seq_length,
    )


def make_train_state(model: FlaxBiGSForMaskedLM, tx, seed: int, mesh, params=None) -> tuple[dict, Any]:
    """The train state {params, opt_state, step, rng} created directly with its shardings
    (so a model too big for one device is never whole on one), and those shardings."""
    rng = jax.random.PRNGKey(seed)

    # `params` is an argument, not a closure: a checkpoint's arrays are not baked into the program.
    def init(rng, params):
        model_params = model.init_weights(rng) if params is None else params
        return {"params": model_params, "opt_state": tx.init(model_params), "step": jnp.int32(0),
                "rng": jax.random.key_data(rng)}

    shapes = jax.eval_shape(init, rng, params)
    state_shardings = sharding.tree_shardings(shapes, mesh)
    state = jax.jit(init, out_shardings=state_shardings)(rng, params)
    return state, state_shardings


def make_train_step(model: FlaxBiGSForMaskedLM, tx, max_predictions: int):
    """(state, batch) -> (state, metrics). batch arrays are [micro_batches, B, L]."""

    def micro_loss(params, micro, dropout_rng):
        positions = jnp.broadcast_to(jnp.arange(micro["input_ids"].shape[1]), micro["input_ids"].shape)
        out = model.module.apply(
            {"params": params}, micro["input_ids"], micro["attention_mask"], micro["token_type_ids"], positions,
            micro["labels"], max_predictions=max_predictions, deterministic=False,
            rngs={"dropout": dropout_rng}, method=FlaxBiGSForMaskedLMModule.mlm_loss,
        )
        return out.loss, out

    def train_step(state, batch):
        step_rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        grad_fn = jax.grad(micro_loss, has_aux=True)

        def accumulate(total, indexed_micro):
            index, micro = indexed_micro
            grads, out = grad_fn(state["params"], micro, jax.random.fold_in(step_rng, index))
            total_grads, loss, correct, count = total
            return (jax.tree.map(jnp.add, total_grads, grads), loss + out.loss,
                    correct + out.correct, count + out.count), None

        num_micro = batch["input_ids"].shape[0]
        zeros = jax.tree.map(jnp.zeros_like, state["params"])
        (grads, loss, correct, count), _ = jax.lax.scan(
            accumulate, (zeros, 0.0, 0, 0), (jnp.arange(num_micro), batch))
        grads = jax.tree.map(lambda g: g / num_micro, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = jax.tree.map(jnp.add, state["params"], updates)
        new_state = {"params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": state["rng"]}
        metrics = {"loss": loss / num_micro, "accuracy": correct / jnp.maximum(count, 1),
                   "grad_norm": _global_norm(grads)}
        return new_state, metrics

    return train_step


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def make_eval_step(model: FlaxBiGSForMaskedLM, max_predictions: int):
    """(params, batch) -> (summed loss, correct, count) over one [B, L] batch."""

    def eval_step(params, batch):
        positions = jnp.broadcast_to(jnp.arange(batch["input_ids"].shape[1]), batch["input_ids"].shape)
        out = model.module.apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"], positions,
            batch["labels"], max_predictions=max_predictions, deterministic=True,
            method=FlaxBiGSForMaskedLMModule.mlm_loss,
        )
        return out.loss * out.count, out.correct, out.count

    return eval_step


# -------------------------------------------------------------------------------- data
def model_inputs(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A shard batch -> the arrays the train/eval step reads (labels -100 where unmasked)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["input_mask"],
            "token_type_ids": batch["segment_ids"], "labels": labels_from_positions(batch)}


def default_eval_path(dataset_path: str) -> str | None:
    """Held-out shards for a train set: test_shard_* files beside it, else a `heldout` folder
    inside or beside it; None if there are none."""
    source = Path(dataset_path)
    folder = source if source.is_dir() else source.parent
    if any(folder.glob("*test*.hdf5")) or any(folder.glob("*test*.h5")):
        return str(folder)
    for candidate in (folder / "heldout", folder.parent / "heldout"):
        if candidate.is_dir():
            return str(candidate)
    return None


def evaluate(eval_step, params, dataset: ShardDataset, batch_size: int, batch_sharding,
             max_batches: int | None) -> dict[str, float]:
    """MLM loss and accuracy over the held-out shards (a last partial batch is padded with
    rows that have no labels, so it counts exactly)."""
    total_loss, correct, count = 0.0, 0, 0
    batches = dataset.iterate(batch_size, num_epochs=1, drop_remainder=False)
    for index, (batch, _) in enumerate(batches):
        if max_batches is not None and index >= max_batches:
            break
        arrays = _pad_rows(model_inputs(batch), batch_size)
        loss_sum, batch_correct, batch_count = eval_step(params, sharding.global_batch(arrays, batch_sharding))
        total_loss += float(loss_sum)
        correct += int(batch_correct)
        count += int(batch_count)
    return {"loss": total_loss / max(count, 1), "accuracy": correct / max(count, 1), "masked_tokens": count}


def _pad_rows(arrays: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    missing = rows - len(arrays["input_ids"])
    if missing == 0:
        return arrays
    fill = {"input_ids": 0, "attention_mask": 1, "token_type_ids": 0, "labels": -100}
    return {name: np.concatenate([values, np.full((missing, *values.shape[1:]), fill[name], values.dtype)])
            for name, values in arrays.items()}


# ----------------------------------------------------------------------------- logging
def _append_jsonl(path: Path, record: dict) -> None:
    """One whole line per os.write on an O_APPEND file: a crash leaves no half record behind
    other lines (a torn last line is dropped by `_truncate_metrics`)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep only the records of steps <= last_step (those after it will be logged again)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("step", 0) <= last_step:
            kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)


def read_metrics(output_dir: str | os.PathLike, kind: str = "train") -> list[dict]:
    """The records of metrics.jsonl of one kind ("train" or "eval")."""
    path = Path(output_dir) / METRICS
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == kind]


# ---------------------------------------------------------------------------- the loop
def _check_args(args: PretrainArgs) -> None:
    positive = ("max_seq_length", "per_device_train_batch_size", "per_device_eval_batch_size",
                "gradient_accumulation_steps", "num_total_train_steps", "logging_steps", "save_steps",
                "n_layers", "hidden_size", "intermediate_size", "num_ssm", "keep_checkpoints")
    for name in positive:
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name}={getattr(args, name)}; expected a positive integer")
    if args.eval_steps < 0:
        raise ConfigError(f"--eval_steps={args.eval_steps}; expected a positive integer, or 0 for no evaluation")
    if args.learning_rate <= 0:
        raise ConfigError(f"--learning_rate={args.learning_rate}; expected > 0")
    if args.warmup_steps < 0:
        raise ConfigError(f"--warmup_steps={args.warmup_steps}; expected >= 0")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, name) < 1:
            raise ConfigError(f"--{name}={getattr(args, name)}; expected a value in [0, 1)")
    if args.schedule_type not in ("linear", "cosine", "constant"):
        raise ConfigError(f"--schedule_type={args.schedule_type!r}; expected linear, cosine or constant")
    if args.report_to not in ("tensorboard", "none"):
        raise ConfigError(f"--report_to={args.report_to!r}; expected tensorboard or none")
    if args.dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"--dtype={args.dtype!r}; expected float32 or bfloat16")
    if args.ssm_lr_factor is not None and args.ssm_lr_factor <= 0:
        raise ConfigError(f"--ssm_lr_factor={args.ssm_lr_factor}; expected > 0")
    if not Path(args.dataset_path).exists():
        raise DataError(f"--dataset_path {args.dataset_path!r} does not exist; expected a folder of shards")


def _check_run_config(output_dir: Path, run_config: dict) -> None:
    """Write run_config.json, or check a resumed run agrees with the one that wrote it."""
    path = output_dir / RUN_CONFIG
    if path.exists():
        saved = json.loads(path.read_text())
        differing = sorted(k for k in set(saved) | set(run_config) if saved.get(k) != run_config.get(k))
        if differing:
            details = "; ".join(f"{k}: {saved.get(k)!r} -> {run_config.get(k)!r}" for k in differing)
            raise ConfigError(
                f"{str(output_dir)!r} holds checkpoints of a different run ({details}); expected the same "
                "settings to resume, or --overwrite_output_dir to start over"
            )
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(run_config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def run_pretraining(args: PretrainArgs) -> dict[str, Any]:
    """Train (resuming from output_dir's latest checkpoint if any), evaluate, export.
    Returns the final step, last train loss and the last evaluation."""
    _check_args(args)
    is_main = jax.process_index() == 0
    output_dir = Path(args.output_dir)
    if args.overwrite_output_dir and is_main:
        for name in (CHECKPOINTS, RUN_CONFIG, METRICS, "tensorboard"):
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    output_dir.mkdir(parents=True, exist_ok=True)

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
    num_devices = mesh.devices.size
    train_batch = args.per_device_train_batch_size * num_devices
    eval_batch = args.per_device_eval_batch_size * num_devices
    examples_per_step = train_batch * args.gradient_accumulation_steps

    run_config = {
        "model": config.to_dict(), "seed": args.seed, "dataset_path": str(Path(args.dataset_path).resolve()),
        "max_train_shards": args.max_train_shards, "dynamic_masking": args.dynamic_masking,
        "examples_per_step": examples_per_step, "num_total_train_steps": args.num_total_train_steps,
    }
    if is_main:
        _check_run_config(output_dir, run_config)

    schedule = make_schedule(args.schedule_type, args.learning_rate, args.warmup_steps,
                             args.num_total_train_steps, args.cosine_schedule_alpha)
    model = FlaxBiGSForMaskedLM(config, seed=args.seed, dtype=args.dtype, _do_init=False)
    initial_params = None
    if args.model_name_or_path:
        initial_params = FlaxBiGSForMaskedLM.from_pretrained(args.model_name_or_path, dtype=args.dtype).params
    params_shape = model.init_shapes()
    tx = make_optimizer(schedule, params_shape, weight_decay=args.weight_decay, b1=args.adam_beta1,
                        b2=args.adam_beta2, eps=args.adam_epsilon, max_grad_norm=args.max_grad_norm or None,
                        ssm_lr_factor=args.ssm_lr_factor)
    state, state_shardings = make_train_state(model, tx, args.seed, mesh, initial_params)

    checkpointer = TrainCheckpointer(output_dir / CHECKPOINTS, keep=args.keep_checkpoints)
    position = None
    restored = checkpointer.restore(state)
    if restored is not None:
        _, state, meta = restored
        position = DataPosition.from_dict(meta["data_position"])
    start_step = int(state["step"])
    if is_main:
        _truncate_metrics(output_dir / METRICS, start_step)

    replicated = sharding.replicated(mesh)
    train_step = jax.jit(make_train_step(model, tx, max_predictions),
                         in_shardings=(state_shardings, sharding.batch_sharding(mesh, leading_dims=1)),
                         out_shardings=(state_shardings, replicated), donate_argnums=0)
    eval_step = jax.jit(make_eval_step(model, max_predictions),
                        in_shardings=(state_shardings["params"], sharding.batch_sharding(mesh)),
                        out_shardings=replicated)
    eval_path = (args.eval_dataset_path or default_eval_path(args.dataset_path)) if args.eval_steps else None
    eval_data = None
    if eval_path is not None:
        eval_data = ShardDataset(eval_path, seed=args.seed, split="test" if eval_path == _folder(args.dataset_path)
                                 else None, shuffle=False, special_tokens=train_data.special_tokens)

    logdir = output_dir / "tensorboard" if is_main and args.report_to == "tensorboard" else None
    progress = Progress(args.num_total_train_steps, logdir,
                        unit="tok", initial_step=start_step, disable=args.disable_progress_bar or not is_main)
    micro_sharding = sharding.batch_sharding(mesh, leading_dims=1)
    batches = train_data.iterate(examples_per_step, start=position)
    metrics, last_eval = {}, None
    step = start_step
    try:
        while step < args.num_total_train_steps:
            batch, position = next(batches)
            arrays = {name: values.reshape(args.gradient_accumulation_steps, train_batch, *values.shape[1:])
                      for name, values in model_inputs(batch).items()}
            state, metrics = train_step(state, sharding.global_batch(arrays, micro_sharding))
            step += 1
            if step % args.logging_steps == 0 or step == args.num_total_train_steps:
                record = {"kind": "train", "step": step, "learning_rate": float(schedule(step - 1)),
                          **{name: float(value) for name, value in metrics.items()}}
                progress.update(step, int(batch["input_mask"].sum()) * args.logging_steps,
                                {"loss": record["loss"], "lr": record["learning_rate"]})
                if is_main:
                    _append_jsonl(output_dir / METRICS, record)
            if eval_data is not None and (step % args.eval_steps == 0 or step == args.num_total_train_steps):
                last_eval = evaluate(eval_step, state["params"], eval_data, eval_batch,
                                     sharding.batch_sharding(mesh), args.max_eval_batches)
                progress.log_eval(step, last_eval)
                if is_main:
                    _append_jsonl(output_dir / METRICS, {"kind": "eval", "step": step, **last_eval})
                progress.reset_clock()
            if step % args.save_steps == 0 or step == args.num_total_train_steps:
                checkpointer.save(step, state, {"data_position": position.to_dict(), "examples_per_step":
                                                examples_per_step})
                progress.reset_clock()
    finally:
        progress.close()
    checkpointer.close()

    export_params = sharding.to_host(state["params"])
    if is_main:
        model.save_pretrained(output_dir, params=export_params, tokenizer=_tokenizer_near(args.dataset_path))
    sharded = sum(any(axis is not None for axis in s.spec) for s in jax.tree.leaves(state_shardings["params"]))
    return {"step": step, "loss": float(metrics["loss"]) if metrics else None, "eval": last_eval,
            "num_devices": num_devices, "sharded_param_leaves": sharded}


def _folder(dataset_path: str) -> str:
    source = Path(dataset_path)
    return str(source if source.is_dir() else source.parent)


def _tokenizer_near(dataset_path: str):
    """The BiGSTokenizer of the vocab.txt beside the shards, if build_shards wrote one."""
    from ..tokenizer import BiGSTokenizer

    vocab = Path(_folder(dataset_path)) / "vocab.txt"
    return BiGSTokenizer.from_vocab(str(vocab)) if vocab.is_file() else None
