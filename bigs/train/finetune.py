"""Fine-tuning a BiGS sequence classifier on GLUE or the user's labelled files.

    results = run(FinetuneConfig(output_dir="out", task_name="mrpc", data_dir="glue_data", ...))

`run` is the whole job: read the data (bigs.data.glue), load or build the model, encode
the examples once (bigs.data.batching), train with the shared loop (loop.py) and this
module's `FinetuneTask` (its batches, its loss, its evaluation, its exports), then predict
the test split (bigs.predict). The `bigs glue` / `run_glue.py` command only parses flags
into a FinetuneConfig.

Padding has two parts, each with its own flag:
  --batching  longest (default): each batch padded to its longest example, batches drawn
              from buckets of similar length; max_length: every example padded to
              --max_seq_length, as the original run_glue.py
  --pad_mode  exact (default): pads contribute nothing, so a prediction does not depend
              on its batch; reference: pads flow through the backward SSM as in the original
The published `--padding` flag sets both: exact = longest + exact, max_length = max_length +
exact, reference = max_length + reference.

Outputs in output_dir, each written atomically, beside the loop's (output_dir.py):
  config.json, flax_model.msgpack, model.safetensors, tokenizer files: the best model by
      the task's metric on the first evaluation split (loadable by from_pretrained)
  eval_results.json      metrics of the best step and of every evaluation
  <Task>.tsv             test-split predictions in the GLUE submission format
                         (predict_results.tsv for the user's own files)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from ..config import BiGSConfig
from ..data.batching import Batching, Encoded, encode, make_batch, steps_per_epoch, update_order
from ..data.glue import (TRAIN, Examples, TaskSpec, get_task, glue_files, load_glue_hub, load_glue_tsv,
                         load_user_files, submission_filename, write_predictions, write_submission)
from ..errors import ConfigError, DataError
from ..files import check_writable_folder, write_json
from ..metrics import compute_generic_metrics, compute_metrics
from ..modeling import FlaxBiGSForSequenceClassification
from ..predict import predict_logits, to_predictions
from ..tokenizer import BiGSTokenizer
from . import sharding
from .arguments import DEFAULT_MAX_SEQ_LENGTH, FinetuneConfig
from .loop import Batch, Task, train
from .optim import make_optimizer, make_schedule
from .output_dir import MODEL_FILES, RUN_MARKERS, RunFolder

logger = logging.getLogger("bigs")

RESULTS = "eval_results.json"
# The commands whose runs this module trains (run_settings.json's "command").
FINETUNING_COMMANDS = ("glue", "demo")


# ------------------------------------------------------------------------------- data
def load_data(config: FinetuneConfig) -> tuple[dict[str, Examples], TaskSpec]:
    """{split: Examples} and the task, from GLUE TSV files, the hub, or the user's files."""
    user_files = (config.train_file, config.validation_file, config.test_file)
    if config.task_name and any(user_files):
        raise DataError("give either task_name (a GLUE task) or train_file/validation_file/test_file, not both")
    if config.task_name:
        spec = get_task(config.task_name)
        data_dir = _glue_dir(config)
        data = load_glue_tsv(spec.name, data_dir) if data_dir else load_glue_hub(spec.name)
    elif any(user_files):
        data, spec = load_user_files(config.train_file, config.validation_file, config.test_file,
                                     config.text_columns, config.label_column)
        if not spec.labels and not spec.is_regression:      # a test file alone: the model's labels
            spec = _labels_of_the_model(config, spec)
    else:
        raise DataError("no data: expected task_name (with data_dir, or online for the hub) or train_file")
    limits = {TRAIN: config.max_train_samples}
    limits.update({split: config.max_eval_samples for split in spec.eval_splits})
    limits.update({split: config.max_predict_samples for split in spec.test_splits})
    return {split: _head(examples, limits.get(split)) for split, examples in data.items()}, spec


def _labels_of_the_model(config: FinetuneConfig, spec: TaskSpec) -> TaskSpec:
    """`spec` (of the user's files, none labelled) with the labels of the classifier it will
    predict with: --model_name_or_path's id2label, or a regression for one output. DataError
    when there is no such model to take them from."""
    if config.model_name_or_path is None:
        raise DataError("no labelled file to take the labels from; give --train_file or --validation_file, or "
                        "--model_name_or_path of a fine-tuned classifier (its labels are used)")
    model = BiGSConfig.from_pretrained(config.model_name_or_path)
    if model.problem_type == "regression" or model.num_labels == 1:
        return dataclasses.replace(spec, labels=(), is_regression=True, metric="pearson")
    return dataclasses.replace(spec, labels=tuple(str(model.id2label[i]) for i in range(model.num_labels)))


def _glue_dir(config: FinetuneConfig) -> str | None:
    return config.data_dir or os.environ.get("GLUE_DIR") or ("glue_data" if os.path.isdir("glue_data") else None)


def _head(examples: Examples, n: int | None) -> Examples:
    if n is None or n >= len(examples):
        return examples
    return Examples(examples.text_a[:n], None if examples.text_b is None else examples.text_b[:n],
                    None if examples.labels is None else examples.labels[:n], list(examples.ids[:n]))


def _fingerprint(path: str) -> str:
    """The start of a data file's SHA-256: equal for the same content under any name or folder."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256 {digest.hexdigest()[:16]}"


def _data_sources(config: FinetuneConfig, spec: TaskSpec) -> dict[str, str]:
    """What the training and evaluation examples come from, per split (for resuming)."""
    if config.task_name:
        data_dir = _glue_dir(config)
        if data_dir is None:
            return {"hub": f"nyu-mll/glue/{spec.name}"}
        files = glue_files(spec.name, data_dir)
    else:
        files = {TRAIN: config.train_file, "validation": config.validation_file}
    return {split: _fingerprint(path) for split, path in files.items()
            if path is not None and split not in spec.test_splits}


def score(spec: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The task's metrics of [n, num_labels] logits against [n] labels."""
    if spec.name == "custom":
        return compute_generic_metrics(logits, labels, spec.is_regression)
    return compute_metrics(spec.name, logits, labels)


# ------------------------------------------------------------------------------- model
def load_model(config: FinetuneConfig, spec: TaskSpec) -> tuple[FlaxBiGSForSequenceClassification, BiGSTokenizer]:
    """The classifier with a head of spec.num_labels, and its tokenizer. A checkpoint whose
    head has another size (an MNLI checkpoint for MRPC or STS-B) gets a fresh head."""
    dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
    # The saved model predicts with the pad mode it was fine-tuned with.
    overrides = {"num_labels": spec.num_labels, "pad_mode": config.pad_mode,
                 "problem_type": "regression" if spec.is_regression else "single_label_classification"}
    if not spec.is_regression:
        overrides["id2label"] = dict(enumerate(spec.labels))
        overrides["label2id"] = {name: i for i, name in enumerate(spec.labels)}
    tokenizer_source = config.tokenizer_name or config.model_name_or_path
    if tokenizer_source is None:
        raise ConfigError("training from random initialisation needs tokenizer_name (a folder or a vocab.txt)")
    if config.tokenizer_name is not None and not os.path.exists(config.tokenizer_name) and (
            config.tokenizer_name.startswith((".", "/", "~")) or config.tokenizer_name.endswith((".txt", ".json"))):
        raise DataError(f"--tokenizer_name {config.tokenizer_name!r} does not exist; expected a tokenizer folder "
                        "or a vocab.txt")
    tokenizer = BiGSTokenizer.from_pretrained(tokenizer_source)
    if config.max_seq_length is None:       # `run` has set it already; direct callers may not have
        config = with_max_seq_length(config)
    if config.model_name_or_path is not None:
        model = FlaxBiGSForSequenceClassification.from_pretrained(
            config.model_name_or_path, dtype=dtype, seed=config.seed, **overrides, **config.model_overrides)
    else:
        base = BiGSConfig.from_json_file(config.config_name).to_dict() if config.config_name else {}
        base.setdefault("vocab_size", tokenizer.vocab_size)
        base.setdefault("max_position_embeddings", config.max_seq_length)
        model_config = BiGSConfig.from_dict(base, **overrides, **config.model_overrides)
        model = FlaxBiGSForSequenceClassification(model_config, seed=config.seed, dtype=dtype)
    tokenizer.check_fits(model.config.vocab_size)
    if config.max_seq_length > model.config.max_position_embeddings:
        raise ConfigError(f"max_seq_length={config.max_seq_length} is longer than the model's "
                          f"max_position_embeddings={model.config.max_position_embeddings}")
    tokenizer.model_max_length = config.max_seq_length
    return model, tokenizer


def with_max_seq_length(config: FinetuneConfig) -> FinetuneConfig:
    """`config` with max_seq_length set: as given, else DEFAULT_MAX_SEQ_LENGTH (128) cut to
    the starting model's max_position_embeddings (a --max_position_embeddings override, the
    checkpoint's config.json or --config_name's), so a 64-position checkpoint fine-tunes and
    evaluates without a flag (`run` says so once the run starts). Reads the checkpoint's
    config first, so an unreachable checkpoint fails here, by name, before any data is read.
    """
    checkpoint = (BiGSConfig.from_pretrained(config.model_name_or_path)
                  if config.model_name_or_path is not None else None)
    if config.max_seq_length is not None:
        return config
    if "max_position_embeddings" in config.model_overrides:
        positions = config.model_overrides["max_position_embeddings"]
    elif checkpoint is not None:
        positions = checkpoint.max_position_embeddings
    elif config.config_name is not None:
        positions = BiGSConfig.from_json_file(config.config_name).max_position_embeddings
    else:
        positions = DEFAULT_MAX_SEQ_LENGTH
    return dataclasses.replace(config, max_seq_length=min(DEFAULT_MAX_SEQ_LENGTH, positions))


# ------------------------------------------------------------------------------- the task
def classifier_loss(logits, labels, weights, is_regression: bool):
    """Summed weighted cross-entropy (classes) or squared error (regression) of [rows, num_labels] logits."""
    if is_regression:
        per_example = (logits[:, 0] - labels) ** 2
    else:
        per_example = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return jnp.sum(per_example * weights)


class FinetuneTask(Task):
    """Sequence classification on encoded examples: batches of `rows * accumulation`
    examples in a (seed, epoch) order, the classifier's loss, evaluation on the task's
    evaluation splits, and the best model and eval_results.json as exports."""

    unit = "ex"
    keep_best = True

    def __init__(self, config: FinetuneConfig, spec: TaskSpec, model, tokenizer, encoded: dict[str, Encoded],
                 batching: Batching, rows: int):
        self.config, self.spec, self.model, self.tokenizer = config, spec, model, tokenizer
        self.encoded, self.batching, self.rows = encoded, batching, rows
        self.pad_id = tokenizer.pad_token_id
        self.eval_splits = [split for split in spec.eval_splits
                            if split in encoded and encoded[split].labels is not None]
        self.outputs = (*MODEL_FILES,
                        *(_prediction_file(spec, split) for split in spec.test_splits if split in encoded))

    @property
    def update_size(self) -> int:
        """Examples per optimizer update: rows of a step times gradient_accumulation_steps."""
        return self.rows * self.config.gradient_accumulation_steps

    def steps_per_epoch(self) -> int:
        """Optimizer updates in one pass over the training split (the last one may be short)."""
        return steps_per_epoch(len(self.encoded[TRAIN]), self.update_size)

    def loss(self, params, micro, dropout_rng):
        input_ids = micro["input_ids"]
        positions = jnp.broadcast_to(jnp.arange(input_ids.shape[1]), input_ids.shape)
        out = self.model.module.apply({"params": params}, input_ids, micro["attention_mask"], micro["token_type_ids"],
                                      positions, deterministic=False, pad_mode=self.config.pad_mode,
                                      rngs={"dropout": dropout_rng})
        logits = out.logits.astype(jnp.float32)
        return {"loss": classifier_loss(logits, micro["labels"], micro["weights"], self.spec.is_regression),
                "count": jnp.sum(micro["weights"])}

    def batches(self, start_step: int, position: dict | None) -> Iterator[Batch]:
        """The order is a function of (seed, epoch), so the step alone says where to resume."""
        data, accumulation = self.encoded[TRAIN], self.config.gradient_accumulation_steps
        per_epoch, step = self.steps_per_epoch(), start_step
        while True:
            epoch, skip = divmod(step, per_epoch)
            for indices in update_order(data.lengths, self.update_size, epoch, self.config.seed,
                                        self.batching.bucket)[skip:]:
                width = self.batching.width(int(data.lengths[indices].max()))
                arrays = make_batch(data, indices, self.update_size, width, self.pad_id)
                arrays = {name: values.reshape(accumulation, self.rows, *values.shape[1:])
                          for name, values in arrays.items()}
                step += 1
                yield Batch(arrays, None, len(indices))

    def logits(self, split: str, params) -> np.ndarray:
        """[n, num_labels] float32: the model's logits for every example of `split`, in order."""
        return predict_logits(self.model, self.encoded[split], batching=self.batching,
                              batch_size=self.config.per_device_eval_batch_size, pad_id=self.pad_id,
                              params=params, pad_mode=self.config.pad_mode)

    def evaluate(self, params) -> dict[str, Any]:
        return {split: score(self.spec, self.logits(split, params), self.encoded[split].labels)
                for split in self.eval_splits}

    def score(self, metrics: dict[str, Any]) -> float | None:
        first = self.eval_splits[0] if self.eval_splits else None
        return metrics[first][self.spec.metric] if first in metrics else None

    def export(self, params) -> None:
        self.model.save_pretrained(self.config.output_dir, params=params, tokenizer=self.tokenizer)

    def export_results(self, summary: dict[str, Any]) -> None:
        write_json(os.path.join(self.config.output_dir, RESULTS), _results(self.spec, self.config, summary))


def _results(spec: TaskSpec, config: FinetuneConfig, summary: dict[str, Any]) -> dict[str, Any]:
    """eval_results.json: the best step, its metric and metrics, and every evaluation."""
    return {"task": spec.name, "metric": spec.metric, "best_step": summary.get("best_step"),
            "best_metric": summary.get("best_metric"), "eval": summary.get("best_eval", {}),
            "history": summary.get("history", []), "config": _json_safe(dataclasses.asdict(config))}


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def run_settings(config: FinetuneConfig, spec: TaskSpec, model, mesh, max_steps: int,
                 command: str = "glue") -> dict[str, Any]:
    """What a resumed fine-tuning run must agree with, in the order a difference is reported."""
    start = config.model_name_or_path
    if start is not None and os.path.isdir(start):
        start = os.path.abspath(start)
    return {
        "command": command,
        "model": model.config.to_dict(),
        "labels": {"names": list(spec.labels), "regression": spec.is_regression},
        "data": {"task": spec.name, **_data_sources(config, spec), "max_train_samples": config.max_train_samples,
                 "max_eval_samples": config.max_eval_samples},
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "num_devices": int(mesh.devices.size), "fsdp": config.fsdp,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "max_seq_length": config.max_seq_length,
        "max_steps": max_steps,
        "seed": config.seed,
        "model_name_or_path": start,
        "training": {name: getattr(config, name) for name in (
            "learning_rate", "schedule_type", "cosine_schedule_alpha", "warmup_steps", "weight_decay", "adam_beta1",
            "adam_beta2", "adam_epsilon", "max_grad_norm", "freeze_kernel", "dtype", "batching", "pad_mode",
            "pad_to_multiple_of")},
    }


# ------------------------------------------------------------------------------- the run
def run(config: FinetuneConfig, command: str = "glue") -> dict[str, Any]:
    """Train, evaluate, keep the best model and predict the test split. Returns what this call
    found: the training record (best step, metric, history) when it trained, else the
    evaluation, plus the prediction files; eval_results.json keeps both across calls.
    `command` names the run in run_settings.json (another command will not resume it).

    Raises a BiGSError subclass, before writing anything, for bad flags, data or an
    output_dir holding another run; NonFiniteError if training diverges.
    """
    config.validate()
    check_writable_folder(config.output_dir)
    phases_given = config.do_train or config.do_eval or config.do_predict
    do_train, do_eval, do_predict = ((config.do_train, config.do_eval, config.do_predict) if phases_given
                                     else (True, True, True))
    runs_model = not do_train and config.resume and not config.overwrite_output_dir
    if runs_model:
        config = with_the_runs_model(config, command)
    length_given = config.max_seq_length is not None
    config = with_max_seq_length(config)   # an unreachable checkpoint fails here, first
    data, spec = load_data(config)
    if do_train and TRAIN not in data:
        raise DataError(f"no training split for {spec.name}; expected a train file")
    if not do_train:                       # the folder is checked before a model is built for it
        _check_evaluation_folder(config, spec, do_predict)
    if not do_train and config.model_name_or_path is not None:
        check_head_fits(config.model_name_or_path, spec)
    model, tokenizer = load_model(config, spec)
    if runs_model:
        logger.info(f"evaluating the model the run in {config.output_dir!r} saved (its best evaluation)")
    if not length_given and config.max_seq_length < DEFAULT_MAX_SEQ_LENGTH:
        logger.info(f"max_seq_length: {config.max_seq_length}, the model's max_position_embeddings "
                    "(--max_seq_length to change)")
    batching = Batching(config.batching, config.max_seq_length, config.pad_to_multiple_of)
    # only the splits a phase reads: training evaluates as it goes, so it keeps the eval splits
    wanted = ({TRAIN} if do_train else set()) | (set(spec.eval_splits) if do_train or do_eval else set()) | (
        set(spec.test_splits) if do_predict else set())
    encoded = {split: encode(tokenizer, examples, config.max_seq_length, f"{split} examples")
               for split, examples in data.items() if split in wanted}
    if do_train and len(encoded[TRAIN]) == 0:      # refused here, before output_dir is touched
        raise DataError(f"the training split of {spec.name} has no examples")
    mesh = sharding.make_mesh(config.num_devices, config.fsdp)
    task = FinetuneTask(config, spec, model, tokenizer, encoded, batching,
                        rows=config.per_device_train_batch_size * mesh.devices.size)

    results: dict[str, Any] = {"task": spec.name, "metric": spec.metric}
    params = model.params
    if do_train:
        per_epoch = task.steps_per_epoch()
        max_steps = (config.max_steps if config.max_steps > 0
                     else max(1, math.ceil(config.num_train_epochs * per_epoch)))
        eval_every = config.eval_steps if config.eval_steps is not None else per_epoch
        loop_args = dataclasses.replace(config, max_steps=max_steps, eval_steps=eval_every,
                                        save_steps=config.save_steps if config.save_steps is not None else eval_every)
        schedule = make_schedule(config.schedule_type, config.learning_rate, config.warmup_steps, max_steps,
                                 config.cosine_schedule_alpha)
        tx = make_optimizer(schedule, model.params, weight_decay=config.weight_decay, b1=config.adam_beta1,
                            b2=config.adam_beta2, eps=config.adam_epsilon,
                            max_grad_norm=config.max_grad_norm or None, freeze_kernel=config.freeze_kernel)
        summary = train(task, loop_args, model=model, tx=tx, schedule=schedule, mesh=mesh,
                        settings=run_settings(config, spec, model, mesh, max_steps, command), params=model.params)
        results = _results(spec, config, summary)
        params = summary["best_params"]
        if params is None:  # resumed after the last evaluation: the best model is on disk
            params = FlaxBiGSForSequenceClassification.from_pretrained(config.output_dir).params
    else:                              # evaluate and predict only: results, never a model
        RunFolder(config.output_dir).start(None, resumed_step=None, overwrite=config.overwrite_output_dir)
        if do_eval and task.eval_splits:
            results["eval"] = task.evaluate(params)
            _write_results(config.output_dir, results)
    if do_predict:
        written = []
        for split in spec.test_splits:
            if split in encoded:
                predictions = to_predictions(task.logits(split, params), spec.is_regression)
                written.append(_write_test_predictions(config.output_dir, spec, split, predictions, data[split].ids))
        results["prediction_files"] = written
        if written:
            _write_results(config.output_dir, results)
    return results


def _write_results(output_dir: str, results: dict[str, Any]) -> None:
    """Write eval_results.json: `results` over what the file already holds for this task (a
    run's training record stays when its model is evaluated or predicts again)."""
    path = os.path.join(output_dir, RESULTS)
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = None
    if isinstance(saved, dict) and saved.get("task") == results.get("task"):
        results = {**saved, **results}
    write_json(path, results)


def check_head_fits(source: str, spec: TaskSpec) -> None:
    """Before evaluating or predicting without training: ConfigError unless the classifier
    of checkpoint `source` predicts what `spec`'s labels are (a regression, or as many classes,
    with the same names unless the checkpoint's are the default LABEL_i). Otherwise loading
    would put a new, untrained head in its place and score that."""
    model = BiGSConfig.from_pretrained(source)
    regression = model.problem_type == "regression" or model.num_labels == 1
    names = tuple(str(model.id2label[i]) for i in range(model.num_labels))
    default = names == tuple(f"LABEL_{i}" for i in range(model.num_labels))
    fits = regression == spec.is_regression and (regression or len(names) == len(spec.labels)) and (
        regression or default or names == tuple(spec.labels))

    def described(is_regression, labels):
        return "a regression score" if is_regression else f"{len(labels)} classes {list(labels)}"

    if not fits:
        raise ConfigError(f"the classifier of {source} predicts {described(regression, names)}, but the data's "
                          f"labels are {described(spec.is_regression, spec.labels)}; evaluating would score a new, "
                          "untrained head: give data with the model's labels, or train it (--do_train)")


def _check_evaluation_folder(config: FinetuneConfig, spec: TaskSpec, do_predict: bool) -> None:
    """Before a run that only evaluates or predicts: RunFolder.check of output_dir, and a
    refusal (ConfigError) of --overwrite_output_dir where a saved model lies, which such a run
    would neither replace nor use (--resume evaluates it)."""
    folder = RunFolder(config.output_dir)
    outputs = (RESULTS, *(_prediction_file(spec, split) for split in spec.test_splits if do_predict))
    folder.check(None, resume=config.resume, overwrite=config.overwrite_output_dir, outputs=outputs)
    weights = folder.present(("flax_model.msgpack", "model.safetensors"))
    if config.overwrite_output_dir and weights:
        raise ConfigError(f"--overwrite_output_dir without --do_train: output_dir {config.output_dir!r} holds a "
                          f"saved model ({', '.join(weights)}) that evaluating or predicting would not replace; pass "
                          "--resume (and no --overwrite_output_dir) to use that model, or choose another --output_dir")


def with_the_runs_model(config: FinetuneConfig, command: str = "glue") -> FinetuneConfig:
    """`config` to evaluate or predict with the model a fine-tuning run in output_dir saved
    (its best), for --do_eval / --do_predict with --resume and no training: the run's model,
    config and tokenizer, not a new one from the flags. Unchanged when output_dir holds no run
    (RunFolder.check then refuses --resume).

    Raises ConfigError when the folder holds another command's run, a run of another task,
    no saved model yet, or when --model_name_or_path names a model other than the run's start
    or the run itself.
    """
    folder = RunFolder(config.output_dir)
    if not folder.present(RUN_MARKERS):
        return config
    saved = folder.saved_settings() or {}
    where = repr(config.output_dir)
    if saved.get("command") not in (None, command, *FINETUNING_COMMANDS):
        raise ConfigError(f"output_dir {where} holds a `bigs {saved['command']}` run, not a fine-tuning run with a "
                          "classifier to evaluate; choose the folder of a `bigs glue` or `bigs demo` run")
    task = get_task(config.task_name).name if config.task_name else "custom"
    trained_on = (saved.get("data") or {}).get("task")
    test_file_only = not (config.task_name or config.train_file or config.validation_file)   # the model's labels
    if not test_file_only and trained_on not in (None, task):
        raise ConfigError(f"the run in {where} fine-tuned on {trained_on}, not {task}; evaluate its model on its own "
                          "task (its --task_name, or files of its labels), or choose another --output_dir")
    if not folder.present(("config.json",)) or not folder.present(("flax_model.msgpack", "model.safetensors")):
        raise ConfigError(f"output_dir {where} holds a run that has saved no model yet (it saves one at each "
                          "evaluation); continue its training first: the same command without --do_eval/--do_predict")
    given = config.model_name_or_path
    if given is not None:
        start = saved.get("model_name_or_path")
        same = os.path.realpath(given) if os.path.isdir(given) else given
        accepted = {os.path.realpath(config.output_dir), start, os.path.realpath(start) if start else None}
        if same not in accepted:
            raise ConfigError(f"--model_name_or_path {given!r} is not the model the run in {where} started from "
                              f"({start or 'random initialisation'}); leave it out to evaluate the run's model, or "
                              "choose another --output_dir")
    return dataclasses.replace(config, model_name_or_path=config.output_dir, config_name=None, tokenizer_name=None,
                               model_overrides={})


def _prediction_file(spec: TaskSpec, split: str) -> str:
    """GLUE's submission file name (<Task>.tsv) for GLUE tasks; predict_results.tsv for the user's own files."""
    return "predict_results.tsv" if spec.name == "custom" else submission_filename(spec.name, split)


def _write_test_predictions(output_dir: str, spec: TaskSpec, split: str, predictions: np.ndarray, ids: list) -> str:
    """The test split's predictions as `index<TAB>prediction` lines (label strings, or scores)."""
    path = os.path.join(output_dir, _prediction_file(spec, split))
    if spec.name == "custom":
        write_predictions(path, predictions, ids, spec.labels)
    else:
        write_submission(path, spec.name, predictions, ids)
    return path
