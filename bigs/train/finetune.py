"""Fine-tuning a BiGS sequence classifier on GLUE or the user's labelled files.

Data flows one way: examples -> token ids (once) -> padded batches -> jitted train step ->
evaluation -> best checkpoint. `run(FinetuneConfig(...))` is the whole job; the
`bigs glue` / `run_glue.py` command only parses flags into a FinetuneConfig.

Padding (the `padding` field):
  exact       each batch is padded to its longest sequence, rounded up to a multiple of
              `pad_to_multiple_of` (few distinct shapes, so few recompilations), and the
              model runs with padding="exact": pads contribute nothing, so an example's
              prediction does not depend on what it is batched with. Examples are sorted
              into buckets of similar length. The default.
  max_length  every example padded to max_seq_length, model padding="exact": the same
              predictions as "exact", slower. For checking and timing.
  reference   every example padded to max_seq_length, model padding="reference": pads
              flow through the backward SSM as in the original run_glue.py. Use it to
              reproduce the original's numbers with its checkpoints.

Outputs in output_dir, each written atomically (temporary file, then rename), so a crash
loses nothing already written:
  config.json, flax_model.msgpack, model.safetensors, tokenizer files: the best model by
      bigs.metrics.main_metric on the first evaluation split (loadable by from_pretrained)
  eval_results.json      metrics of the best step and of every evaluation
  <Task>.tsv             test-split predictions in the GLUE submission format
                         (predict_results.tsv for the user's own files)
  checkpoints/<step>/    training state for --resume (orbax; see checkpointing.py)
  runs/                  TensorBoard logs
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import BiGSConfig
from ..data.glue import (TRAIN, Examples, TaskSpec, get_task, load_glue_hub, load_glue_tsv,
                         load_user_files, submission_filename, write_submission)
from ..errors import ConfigError, DataError
from ..metrics import compute_generic_metrics, compute_metrics
from ..modeling import FlaxBiGSForSequenceClassification
from ..tokenizer import BiGSTokenizer
from .optim import make_optimizer, make_schedule
from .progress import Progress

logger = logging.getLogger("bigs")

PADDING_CHOICES = ("exact", "max_length", "reference")
# Model config keys that may be set from flags when training from random initialisation.
MODEL_SIZE_KEYS = ("hidden_size", "num_hidden_layers", "intermediate_size", "num_ssm", "max_position_embeddings")


@dataclass
class FinetuneConfig:
    """Everything one fine-tuning run needs; the CLI flags have the same names."""

    # where to write the model, metrics, predictions, logs and training checkpoints
    output_dir: str
    # checkpoint folder or hub id; None trains from random initialisation
    model_name_or_path: str | None = None
    # a GLUE task ("mrpc", "sst2", ...), or None with train_file/validation_file
    task_name: str | None = None
    # folder of GLUE TSV files; None: $GLUE_DIR, else ./glue_data, else the hub with `datasets`
    data_dir: str | None = None
    # the user's own CSV/TSV/JSON(L) files
    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    # text and label columns of the user's files (detected when None)
    text_columns: Sequence[str] | None = None
    label_column: str | None = None
    # random init: a config.json to start from, the tokenizer, and size overrides
    config_name: str | None = None
    tokenizer_name: str | None = None
    model_overrides: dict[str, int] = field(default_factory=dict)
    # longest sequence in tokens, [CLS]/[SEP] included; longer inputs are truncated
    max_seq_length: int = 128
    # "exact", "max_length" or "reference" (see the module docstring)
    padding: str = "exact"
    # exact padding rounds each batch's length up to a multiple of this
    pad_to_multiple_of: int = 32
    # peak learning rate, linear warm-up over warmup_steps then linear decay to 0
    learning_rate: float = 2e-5
    warmup_steps: int = 0
    # AdamW weight decay; biases and LayerNorm scales are not decayed
    weight_decay: float = 0.0
    # global-norm gradient clipping (0: none)
    max_grad_norm: float = 1.0
    num_train_epochs: float = 3.0
    # > 0: stop after this many steps, overriding num_train_epochs
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    per_device_eval_batch_size: int = 32
    # log loss and learning rate every this many steps
    logging_steps: int = 100
    # evaluate, keep the best model and save a training checkpoint every this many steps
    # (and at the end); None or 0: at the end of each epoch
    eval_steps: int | None = None
    seed: int = 42
    # computation dtype: "float32" or "bfloat16" (params stay float32)
    dtype: str = "float32"
    # do not train the SSM kernel parameters and token-type embeddings
    freeze_kernel: bool = False
    # continue from the latest training checkpoint in output_dir/checkpoints
    resume: bool = False
    # start over in an output_dir that holds a run (its checkpoints/, runs/ and results are deleted)
    overwrite_output_dir: bool = False
    # training checkpoints kept for --resume
    save_total_limit: int = 2
    # which phases run; all three when none is set
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    # use only the first n examples of a split (quick runs)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    # hide the progress bar
    disable_tqdm: bool = False


# ------------------------------------------------------------------------------- data
def load_data(config: FinetuneConfig) -> tuple[dict[str, Examples], TaskSpec]:
    """{split: Examples} and the task, from GLUE TSV files, the hub, or the user's files."""
    user_files = (config.train_file, config.validation_file, config.test_file)
    if config.task_name and any(user_files):
        raise DataError("give either task_name (a GLUE task) or train_file/validation_file/test_file, not both")
    if config.task_name:
        spec = get_task(config.task_name)
        data_dir = config.data_dir or os.environ.get("GLUE_DIR") or ("glue_data" if os.path.isdir("glue_data") else None)
        if data_dir:
            data = load_glue_tsv(spec.name, data_dir)
        else:
            data = load_glue_hub(spec.name)
    elif any(user_files):
        data, spec = load_user_files(config.train_file, config.validation_file, config.test_file,
                                     config.text_columns, config.label_column)
    else:
        raise DataError("no data: expected task_name (with data_dir, or online for the hub) or train_file")
    limits = {TRAIN: config.max_train_samples}
    limits.update({split: config.max_eval_samples for split in spec.eval_splits})
    limits.update({split: config.max_predict_samples for split in spec.test_splits})
    return {split: _head(examples, limits.get(split)) for split, examples in data.items()}, spec


def _head(examples: Examples, n: int | None) -> Examples:
    if n is None or n >= len(examples):
        return examples
    return Examples(examples.text_a[:n], None if examples.text_b is None else examples.text_b[:n],
                    None if examples.labels is None else examples.labels[:n], list(examples.ids[:n]))


@dataclass
class Encoded:
    """One split as token ids, unpadded: lists of [length_i] int32 arrays."""

    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    # [n] label ids or float targets; None for test splits
    labels: np.ndarray | None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), np.int64, len(self.input_ids))

    def __len__(self) -> int:
        return len(self.input_ids)


def encode(tokenizer: BiGSTokenizer, examples: Examples, max_seq_length: int) -> Encoded:
    """Tokenise once, truncated to max_seq_length; padding happens per batch."""
    out = tokenizer(examples.text_a, examples.text_b, max_length=max_seq_length, padding=False,
                    truncation=True, return_numpy=False)
    return Encoded([np.asarray(ids, np.int32) for ids in out["input_ids"]],
                   [np.asarray(types, np.int32) for types in out["token_type_ids"]], examples.labels)


def padded_length(longest: int, config: FinetuneConfig) -> int:
    """Batch width: max_seq_length, or (exact) the longest rounded up to pad_to_multiple_of."""
    if config.padding != "exact":
        return config.max_seq_length
    multiple = max(1, config.pad_to_multiple_of)
    return min(config.max_seq_length, multiple * math.ceil(longest / multiple))


def make_batch(data: Encoded, indices: np.ndarray, batch_size: int, width: int, pad_id: int) -> dict[str, np.ndarray]:
    """Arrays [batch_size, width]. Rows past len(indices) are fillers (one real token, weight 0),
    so every batch has the same batch size and the step compiles once per width."""
    input_ids = np.full((batch_size, width), pad_id, np.int32)
    token_type_ids = np.zeros((batch_size, width), np.int32)
    attention_mask = np.zeros((batch_size, width), np.int32)
    attention_mask[:, 0] = 1  # fillers: an all-pad row would give NaN in the mean pooler
    for row, index in enumerate(indices):
        ids = data.input_ids[index]
        input_ids[row, :len(ids)] = ids
        token_type_ids[row, :len(ids)] = data.token_type_ids[index]
        attention_mask[row, :len(ids)] = 1
    weights = np.zeros(batch_size, np.float32)
    weights[:len(indices)] = 1.0
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
             "weights": weights}
    if data.labels is not None:
        labels = np.zeros(batch_size, data.labels.dtype)
        labels[:len(indices)] = data.labels[indices]
        batch["labels"] = labels
    return batch


def train_batch_order(data: Encoded, batch_size: int, epoch: int, seed: int, bucket: bool) -> list[np.ndarray]:
    """The example indices of each batch of one epoch, the same for the same (seed, epoch)
    (which --resume relies on). With bucket, examples are sorted by length inside windows
    of 64 batches, then the batches are shuffled: little padding, still random."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(data))
    if bucket:
        window = batch_size * 64
        lengths = data.lengths
        order = np.concatenate([chunk[np.argsort(lengths[chunk], kind="stable")]
                                for chunk in np.array_split(order, max(1, math.ceil(len(order) / window)))])
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if bucket:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


# ------------------------------------------------------------------------------- steps
def _model_padding(config: FinetuneConfig) -> str:
    """The model's padding mode for a batching mode."""
    return "reference" if config.padding == "reference" else "exact"


def _logits(module, params, batch, *, padding: str, train: bool, dropout_rng=None):
    """[batch, num_labels] float32 logits."""
    input_ids = batch["input_ids"]
    position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
    out = module.apply({"params": params}, input_ids, batch["attention_mask"], batch["token_type_ids"],
                       position_ids, deterministic=not train, padding=padding,
                       rngs={"dropout": dropout_rng} if train else {})
    return out.logits.astype(jnp.float32)


def loss_fn(logits, labels, weights, is_regression: bool):
    """Weighted mean cross-entropy (classes) or squared error (regression)."""
    if is_regression:
        per_example = (logits[:, 0] - labels) ** 2
    else:
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(per_example * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def make_train_step(module, tx: optax.GradientTransformation, padding: str, is_regression: bool):
    """state, batch, step -> state, loss; state = {"params", "opt_state", "rng"}.

    state["rng"] is the run's key, PRNGKey(seed), and never changes; step `step` (0-based)
    drops out with fold_in(rng, step). So, like the data order, the dropout of a step is a
    function of (seed, step) alone, and a resumed run repeats the uninterrupted one exactly."""
    def train_step(state, batch, step):
        dropout_rng = jax.random.fold_in(state["rng"], step)

        def compute_loss(params):
            logits = _logits(module, params, batch, padding=padding, train=True, dropout_rng=dropout_rng)
            return loss_fn(logits, batch["labels"], batch["weights"], is_regression)

        loss, grads = jax.value_and_grad(compute_loss)(state["params"])
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state, "rng": state["rng"]}, loss

    return jax.jit(train_step, donate_argnums=0)


def make_predict_step(module, padding: str):
    return jax.jit(lambda params, batch: _logits(module, params, batch, padding=padding, train=False))


def predict_logits(predict_step, params, data: Encoded, config: FinetuneConfig, pad_id: int,
                   batch_size: int | None = None) -> np.ndarray:
    """[n, num_labels] logits in the examples' order. Exact padding sorts by length first."""
    batch_size = batch_size or config.per_device_eval_batch_size
    order = np.argsort(data.lengths, kind="stable") if config.padding == "exact" else np.arange(len(data))
    logits = []
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        width = padded_length(int(data.lengths[indices].max()), config)
        batch = make_batch(data, indices, batch_size, width, pad_id)
        batch.pop("labels", None)
        logits.append(np.asarray(predict_step(params, batch))[:len(indices)])
    out = np.empty((len(data), logits[0].shape[1]), np.float32) if logits else np.zeros((0, 1), np.float32)
    if logits:
        out[order] = np.concatenate(logits)
    return out


def to_predictions(logits: np.ndarray, is_regression: bool) -> np.ndarray:
    return logits[:, 0] if is_regression else logits.argmax(-1)


# ------------------------------------------------------------------------------- outputs
def _atomic_json(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_predictions(output_dir: str, spec: TaskSpec, split: str, predictions: np.ndarray, ids: list) -> str:
    """GLUE submission file (<Task>.tsv) for GLUE tasks; predict_results.tsv (same
    `index<TAB>prediction` format, label strings) for the user's own files."""
    if spec.name in ("custom",):
        path = os.path.join(output_dir, "predict_results.tsv")
        values = ([f"{float(v):.3f}" for v in predictions] if spec.is_regression
                  else [spec.labels[int(v)] for v in predictions])
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write("index\tprediction\n")
            f.writelines(f"{index}\t{value}\n" for index, value in zip(ids, values))
    else:
        path = os.path.join(output_dir, submission_filename(spec.name, split))
        tmp = path + ".tmp"
        write_submission(tmp, spec.name, predictions, ids)
    os.replace(tmp, path)
    return path


def score(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    if spec.name == "custom":
        return compute_generic_metrics(logits, labels, spec.is_regression)
    return compute_metrics(spec.name, logits, labels)


# ------------------------------------------------------------------------------- model
def load_model(config: FinetuneConfig, spec: TaskSpec) -> tuple[FlaxBiGSForSequenceClassification, BiGSTokenizer]:
    """The classifier with a head of spec.num_labels, and its tokenizer. A checkpoint whose
    head has another size (an MNLI checkpoint for MRPC or STS-B) gets a fresh head."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(config.dtype)
    if dtype is None:
        raise ConfigError(f"dtype={config.dtype!r}; expected 'float32' or 'bfloat16'")
    labels = {"num_labels": spec.num_labels,
              "problem_type": "regression" if spec.is_regression else "single_label_classification"}
    if not spec.is_regression:
        labels["id2label"] = dict(enumerate(spec.labels))
        labels["label2id"] = {name: i for i, name in enumerate(spec.labels)}
    tokenizer_source = config.tokenizer_name or config.model_name_or_path
    if tokenizer_source is None:
        raise ConfigError("training from random initialisation needs tokenizer_name (a folder or a vocab.txt)")
    tokenizer = BiGSTokenizer.from_pretrained(tokenizer_source)
    if config.model_name_or_path is not None:
        model = FlaxBiGSForSequenceClassification.from_pretrained(
            config.model_name_or_path, dtype=dtype, seed=config.seed, **labels, **config.model_overrides)
    else:
        base = BiGSConfig.from_json_file(config.config_name).to_dict() if config.config_name else {}
        base.setdefault("vocab_size", tokenizer.vocab_size)
        base.setdefault("max_position_embeddings", config.max_seq_length)
        model_config = BiGSConfig.from_dict(base, **labels, **config.model_overrides)
        model = FlaxBiGSForSequenceClassification(model_config, seed=config.seed, dtype=dtype)
    if config.max_seq_length > model.config.max_position_embeddings:
        raise ConfigError(f"max_seq_length={config.max_seq_length} is longer than the model's "
                          f"max_position_embeddings={model.config.max_position_embeddings}")
    tokenizer.model_max_length = config.max_seq_length
    return model, tokenizer


# ------------------------------------------------------------------------------- the run
def _prepare_output_dir(config: FinetuneConfig) -> None:
    """Refuse an output_dir that holds a run, unless resuming it or overwriting it; overwriting
    deletes its training checkpoints, logs and results first (a new run cannot save a step
    the old one saved, and must not resume from it later)."""
    previous = [name for name in ("eval_results.json", "flax_model.msgpack", "checkpoints")
                if os.path.exists(os.path.join(config.output_dir, name))]
    if not previous or config.resume:
        return
    if not config.overwrite_output_dir:
        raise ConfigError(f"output_dir {config.output_dir} already holds a run ({', '.join(previous)}); "
                          "pass --resume to continue it or --overwrite_output_dir to start again")
    for name in ("checkpoints", "runs", "eval_results.json"):
        path = os.path.join(config.output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _validate(config: FinetuneConfig) -> None:
    if config.padding not in PADDING_CHOICES:
        raise ConfigError(f"padding={config.padding!r}; expected one of {PADDING_CHOICES}")
    for name in ("max_seq_length", "per_device_train_batch_size", "per_device_eval_batch_size", "logging_steps"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{name}={getattr(config, name)}; expected a positive integer")
    if config.learning_rate < 0 or config.weight_decay < 0:
        raise ConfigError("learning_rate and weight_decay must be >= 0")


def run(config: FinetuneConfig) -> dict[str, Any]:
    """Train, evaluate, keep the best model and predict the test split. Returns eval_results."""
    _validate(config)
    phases_given = config.do_train or config.do_eval or config.do_predict
    do_train, do_eval, do_predict = ((config.do_train, config.do_eval, config.do_predict) if phases_given
                                     else (True, True, True))
    _prepare_output_dir(config)
    if config.model_name_or_path is not None:
        BiGSConfig.from_pretrained(config.model_name_or_path)  # an unreachable checkpoint fails first, by name
    data, spec = load_data(config)
    if do_train and TRAIN not in data:
        raise DataError(f"no training split for {spec.name}; expected a train file")
    model, tokenizer = load_model(config, spec)
    os.makedirs(config.output_dir, exist_ok=True)
    tokenizer.save_pretrained(config.output_dir)
    pad_id = tokenizer.pad_token_id
    padding = _model_padding(config)
    encoded = {split: encode(tokenizer, examples, config.max_seq_length) for split, examples in data.items()}
    eval_splits = [split for split in spec.eval_splits if split in encoded and encoded[split].labels is not None]
    predict_step = make_predict_step(model.module, padding)
    metric_name = spec.metric

    def evaluate(params) -> dict[str, dict[str, float]]:
        return {split: score(spec, predict_logits(predict_step, params, encoded[split], config, pad_id),
                             encoded[split].labels) for split in eval_splits}

    results: dict[str, Any] = {"task": spec.name, "metric": metric_name, "config": _json_safe(asdict(config))}
    params = model.params
    if do_train:
        params, train_results = train(config, spec, model, encoded, evaluate, pad_id)
        results.update(train_results)
    elif do_eval and eval_splits:
        results["eval"] = evaluate(params)
        _atomic_json(os.path.join(config.output_dir, "eval_results.json"), results)
    if not do_train:
        model.save_pretrained(config.output_dir, params=params)
    if do_predict:
        written = []
        for split in spec.test_splits:
            if split in encoded:
                logits = predict_logits(predict_step, params, encoded[split], config, pad_id)
                written.append(write_predictions(config.output_dir, spec, split,
                                                 to_predictions(logits, spec.is_regression), data[split].ids))
        results["prediction_files"] = written
        if written:
            _atomic_json(os.path.join(config.output_dir, "eval_results.json"), results)
    return results


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def train(config: FinetuneConfig, spec: TaskSpec, model, encoded: dict[str, Encoded], evaluate, pad_id: int):
    """The training loop. Returns the best params (by spec.metric on the first evaluation
    split; the last params when there is none) and the results to record."""
    train_data = encoded[TRAIN]
    batch_size = config.per_device_train_batch_size
    per_epoch = steps_per_epoch(len(train_data), batch_size)
    total_steps = config.max_steps if config.max_steps > 0 else max(1, math.ceil(config.num_train_epochs * per_epoch))
    eval_every = config.eval_steps or per_epoch
    schedule = make_schedule("linear", config.learning_rate, config.warmup_steps, total_steps)
    tx = make_optimizer(schedule, model.params, weight_decay=config.weight_decay,
                        max_grad_norm=config.max_grad_norm or None, freeze_kernel=config.freeze_kernel)
    state = {"params": model.params, "opt_state": tx.init(model.params),
             "rng": jax.random.PRNGKey(config.seed)}
    train_step = make_train_step(model.module, tx, _model_padding(config), spec.is_regression)

    from .checkpointing import TrainCheckpointer  # orbax: imported only when training

    checkpointer = TrainCheckpointer(os.path.join(config.output_dir, "checkpoints"), keep=max(1, config.save_total_limit))
    step, meta = 0, {"best": None, "history": []}
    if config.resume:
        restored = checkpointer.restore(state)
        if restored is None:
            logger.warning("--resume: no training checkpoint in %s; starting from step 0", checkpointer.directory)
        else:
            step, state, meta = restored
            logger.warning("resumed from step %d of %d", step, total_steps)
    best = meta["best"]
    best_params = None
    first_eval = next(iter(spec.eval_splits), None)

    def record_eval(at_step: int) -> None:
        nonlocal best, best_params
        metrics = evaluate(state["params"])
        meta["history"].append({"step": at_step, **metrics})
        for split, values in metrics.items():
            progress.log_eval(at_step, values, prefix=split)
        if first_eval in metrics:
            value = metrics[first_eval][spec.metric]
            if best is None or value > best["value"]:
                best = {"step": at_step, "value": value, "eval": metrics}
                best_params = jax.device_get(state["params"])  # a copy: the step donates its input
                model.save_pretrained(config.output_dir, params=best_params)
        elif best is None or at_step >= best["step"]:  # nothing to select by: keep the latest
            best = {"step": at_step, "value": None, "eval": metrics}
            best_params = jax.device_get(state["params"])
            model.save_pretrained(config.output_dir, params=best_params)
        meta["best"] = best
        _atomic_json(os.path.join(config.output_dir, "eval_results.json"), _results(meta, spec))
        checkpointer.save(at_step, state, meta)
        progress.reset_clock()

    progress = Progress(total_steps, os.path.join(config.output_dir, "runs"), unit="ex", initial_step=step,
                        disable=config.disable_tqdm)
    bucket = config.padding == "exact"
    losses = []
    try:
        while step < total_steps:
            epoch, skip = divmod(step, per_epoch)
            for indices in train_batch_order(train_data, batch_size, epoch, config.seed, bucket)[skip:]:
                width = padded_length(int(train_data.lengths[indices].max()), config)
                state, loss = train_step(state, make_batch(train_data, indices, batch_size, width, pad_id),
                                         np.int32(step))
                step += 1
                losses.append(loss)
                scalars = None
                if step % config.logging_steps == 0 or step == total_steps:
                    # the learning rate this step was taken with (optax counts updates from 0)
                    scalars = {"loss": float(np.mean(jax.device_get(losses))), "lr": float(schedule(step - 1))}
                    losses = []
                progress.update(step, len(indices), scalars)
                if step % eval_every == 0 or step == total_steps:
                    record_eval(step)
                if step >= total_steps:
                    break
    finally:
        progress.close()
        checkpointer.close()
    if best_params is None:  # resumed after the last evaluation: the best is on disk
        best_params = FlaxBiGSForSequenceClassification.from_pretrained(config.output_dir).params
    return best_params, _results(meta, spec)


def _results(meta: dict, spec: TaskSpec) -> dict[str, Any]:
    best = meta["best"] or {}
    return {"task": spec.name, "metric": spec.metric, "best_step": best.get("step"),
            "best_metric": best.get("value"), "eval": best.get("eval", {}), "history": meta["history"]}
