"""The training loop that fine-tuning and pretraining share.

    summary = train(task, args, model=model, tx=tx, schedule=schedule, mesh=mesh, settings=settings)

The loop owns what both jobs have in common: the train state, the step (with gradient
accumulation), the log / evaluate / save cadence, the output folder, resuming, and the
integrity checks. A `Task` supplies what differs: its batches, its loss and metrics, its
evaluation and what it exports.

One step is one optimiser update on `per_device_train_batch_size * devices *
gradient_accumulation_steps` examples, given as [accumulation, rows, ...] arrays whose
micro-batches are scanned inside the step. The update's loss and gradient are the sum over
all its examples divided by their total count (examples, or labelled tokens for MLM), so
they are the same however the examples are split over devices and micro-batches. The step
is a pure function of (state, batch): its dropout key is fold_in(fold_in(key(seed), step),
micro-batch). A resumed run (params, optimiser state, step and data position restored)
therefore continues with exactly the numbers an uninterrupted one computes.

Integrity:
- Each step's metrics stay on the device until the next log, evaluation or save, which
  fetches them in one transfer (no extra sync per step) and stops at the first step whose
  loss or gradient norm is NaN or infinite (NonFiniteError, naming it). Nothing is
  evaluated, exported or saved after it, so the last good checkpoint and the best model stay.
- Params are checked finite before every save and export.
- Resuming compares the saved run's settings with this command's first (output_dir.py),
  then restores the latest readable checkpoint (checkpointing.py).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import NonFiniteError
from ..runtime import ctrl_c_noted, restart_notice
from . import sharding
from .arguments import TrainingArguments
from .checkpointing import TrainCheckpointer
from .output_dir import MODEL_FILES, TENSORBOARD, RunFolder
from .progress import Progress

logger = logging.getLogger("bigs")


class Batch(NamedTuple):
    """One update's examples. `arrays` are [gradient_accumulation_steps, rows, ...] numpy
    arrays (rows = per-device batch * devices); `position` is where the next batch starts
    (saved with checkpoints; None when the step number alone determines it); `items` is what
    the progress bar counts (examples or tokens)."""

    arrays: dict[str, np.ndarray]
    position: dict | None
    items: int


class Task(abc.ABC):
    """What a training job supplies to the loop."""

    # what the progress bar's throughput counts: "ex" (examples) or "tok" (tokens)
    unit = "ex"
    # True: export the best model at each evaluation (fine-tuning); False: the last, at the end
    keep_best = False
    # the files `export` and `export_results` write in output_dir (never over a user's own)
    outputs: tuple[str, ...] = MODEL_FILES

    @abc.abstractmethod
    def loss(self, params, micro: dict[str, jax.Array], dropout_rng) -> dict[str, jax.Array]:
        """Sums over one micro-batch: "loss" (the summed loss), "count" (the examples or
        labelled tokens it is a sum over) and any other sums, reported divided by count
        (e.g. "accuracy": the correct predictions). Traced under jit."""

    @abc.abstractmethod
    def batches(self, start_step: int, position: dict | None) -> Iterator[Batch]:
        """The updates' batches from step `start_step` on, starting at `position` (a saved
        Batch.position) when it is given."""

    def evaluate(self, params) -> dict[str, Any]:
        """Evaluation metrics ({} when there is nothing to evaluate on). Raises
        NonFiniteError rather than score non-finite outputs."""
        return {}

    def score(self, metrics: dict[str, Any]) -> float | None:
        """The value that selects the best model (higher is better); None: keep the latest."""
        return None

    @abc.abstractmethod
    def export(self, params) -> None:
        """Write the model for from_pretrained (host params, per-layer or stacked as the model's)."""

    def export_results(self, summary: dict[str, Any]) -> None:
        """Write the task's results after an evaluation: summary has best_step, best_metric,
        best_eval (the best step's metrics) and history (every evaluation)."""


# ----------------------------------------------------------------------------- the step
def _state_init(model, tx: optax.GradientTransformation):
    def init(rng, params):  # params is an argument, not a closure: its arrays are not baked in
        model_params = model.init_weights(rng) if params is None else params
        return {"params": model_params, "opt_state": tx.init(model_params), "step": jnp.int32(0),
                "rng": jax.random.key_data(rng)}
    return init


def abstract_train_state(model, tx: optax.GradientTransformation, seed: int, mesh, params=None):
    """(abstract, shardings): the train state {params, opt_state, step, rng} as
    jax.ShapeDtypeStructs placed on `mesh` (a restore target), and its shardings."""
    shapes = jax.eval_shape(_state_init(model, tx), jax.random.PRNGKey(seed), params)
    shardings = sharding.tree_shardings(shapes, mesh)
    abstract = jax.tree.map(lambda s, placed: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=placed),
                            shapes, shardings)
    return abstract, shardings


def make_train_state(model, tx: optax.GradientTransformation, seed: int, mesh, params=None, shardings=None):
    """(state, shardings): the train state created directly with its shardings, so a model
    too big for one device is never whole on one. `params` None draws fresh ones on the host
    (model.init_weights with a concrete key), each param handed to the devices in pieces.
    `shardings`: those abstract_train_state gave, if the caller has them already."""
    if shardings is None:
        _, shardings = abstract_train_state(model, tx, seed, mesh, params)
    if params is None:
        params = model.init_weights(jax.random.PRNGKey(seed), shardings["params"])
    state = jax.jit(_state_init(model, tx), out_shardings=shardings)(jax.random.PRNGKey(seed), params)
    return state, shardings


def make_train_step(loss_fn, tx: optax.GradientTransformation):
    """(state, batch) -> (state, metrics). batch arrays are [micro_batches, rows, ...].

    The gradient of each micro-batch's summed loss is accumulated; the update uses the sum
    divided by the update's total count, and metrics report loss, grad_norm and every other
    sum divided by that count."""

    def summed_loss(params, micro, dropout_rng):
        sums = loss_fn(params, micro, dropout_rng)
        return sums["loss"], sums

    grad_fn = jax.grad(summed_loss, has_aux=True)

    def train_step(state, batch):
        step_rng = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])

        def accumulate(total, indexed_micro):
            index, micro = indexed_micro
            grads, sums = grad_fn(state["params"], micro, jax.random.fold_in(step_rng, index))
            total_grads, total_sums = total
            return (jax.tree.map(jnp.add, total_grads, grads),
                    jax.tree.map(lambda a, b: a + b.astype(jnp.float32), total_sums, sums)), None

        num_micro = batch[next(iter(batch))].shape[0]
        shapes = jax.eval_shape(summed_loss, state["params"], jax.tree.map(lambda x: x[0], batch), step_rng)[1]
        zeros = (jax.tree.map(jnp.zeros_like, state["params"]),
                 jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), shapes))
        (grads, sums), _ = jax.lax.scan(accumulate, zeros, (jnp.arange(num_micro), batch))
        count = jnp.maximum(sums.pop("count"), 1.0)
        grads = jax.tree.map(lambda g: g / count, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        new_state = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state,
                     "step": state["step"] + 1, "rng": state["rng"]}
        metrics = {name: value / count for name, value in sums.items()}
        metrics["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g.astype(jnp.float32))) for g in jax.tree.leaves(grads)))
        return new_state, metrics

    return train_step


@jax.jit
def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _stopped(problem: str, last_saved: int | None) -> NonFiniteError:
    kept = f"the latest checkpoint (step {last_saved})" if last_saved else "what output_dir held"
    return NonFiniteError(f"{problem}. Training stopped at the first non-finite value; {kept} and the best model are "
                          "as they were. Try a lower --learning_rate, or --max_grad_norm > 0, with "
                          "--overwrite_output_dir or another --output_dir")


def _check_params(params, step: int, last_saved: int | None) -> None:
    if not bool(_all_finite(params)):
        raise _stopped(f"the parameters hold NaN or infinity after step {step}", last_saved)


def _fetch_and_check(pending: list[tuple[int, dict]], last_saved: int | None) -> list[tuple[int, dict[str, float]]]:
    """The pending steps' metrics as floats, in one transfer; NonFiniteError at the first
    step with a non-finite value (`last_saved`: the latest checkpoint's step, for the message)."""
    values = jax.device_get([metrics for _, metrics in pending])
    fetched = []
    for (step, _), metrics in zip(pending, values):
        floats = {name: float(value) for name, value in metrics.items()}
        bad = {name: value for name, value in floats.items() if not np.isfinite(value)}
        if bad:
            shown = ", ".join(f"{name} {value}" for name, value in sorted(bad.items(), key=lambda item: item[0] != "loss"))
            raise _stopped(f"step {step}: {shown}", last_saved)
        fetched.append((step, floats))
    return fetched


# ----------------------------------------------------------------------------- the loop
def train(task: Task, args: TrainingArguments, *, model, tx: optax.GradientTransformation, schedule, mesh,
          settings: dict[str, Any], params=None) -> dict[str, Any]:
    """Run `task` to args.max_steps (resuming the run in args.output_dir when there is one).

    `args.eval_steps` and `args.save_steps` must be resolved (0: never evaluate). `settings`
    are what a resume must agree with (output_dir.RunFolder.check). `params` are the starting
    params (None: fresh ones). Returns {step, train (the last logged metrics), last_eval,
    best_step, best_metric, best_eval (the best step's evaluation), history (every
    evaluation), best_params (host params of the model exported in this process, or None)}.

    Raises ConfigError or RunMismatchError before writing anything when output_dir holds
    another run, NonFiniteError at the first non-finite loss, gradient norm or parameter.
    """
    is_main = jax.process_index() == 0
    folder = RunFolder(args.output_dir, writer=is_main)
    resuming = folder.check(settings, resume=args.resume, overwrite=args.overwrite_output_dir, outputs=task.outputs)

    checkpointer = TrainCheckpointer(folder.checkpoints, keep=args.save_total_limit)
    step, state, meta = 0, None, {}
    abstract, state_shardings = abstract_train_state(model, tx, args.seed, mesh, params)
    if resuming:
        restored = checkpointer.restore(abstract)
        if restored is not None:
            step, state, meta = restored
            logger.info("resumed from step %d of %d in %s", step, args.max_steps, folder.checkpoints)
        elif args.resume:
            logger.warning("--resume: no checkpoint in %s; starting from step 0", folder.checkpoints)
    if state is None:
        state, _ = make_train_state(model, tx, args.seed, mesh, params, shardings=state_shardings)
    folder.start(settings, resumed_step=step, overwrite=args.overwrite_output_dir)
    notice = restart_notice()       # a command restarted for huge pages says so now that it trains
    if notice and is_main:
        logger.info(notice)

    micro_sharding = sharding.batch_sharding(mesh, leading_dims=1)
    train_step = jax.jit(make_train_step(task.loss, tx), in_shardings=(state_shardings, micro_sharding),
                         out_shardings=(state_shardings, sharding.replicated(mesh)), donate_argnums=0)
    logdir = (folder.path / TENSORBOARD if is_main and args.report_to == "tensorboard" and step < args.max_steps
              else None)
    progress = Progress(args.max_steps, logdir, unit=task.unit, initial_step=step,
                        disable=args.disable_tqdm or not is_main)
    history, best = list(meta.get("history", [])), meta.get("best")
    window = [(s, values) for s, values in meta.get("log_window", [])]   # steps since the last log
    pending: list[tuple[int, dict]] = []                                  # steps not yet fetched
    last_train, last_eval, best_params, last_saved = None, None, None, step or None
    # Wall time spent training (evaluation and saving excluded) and items seen, kept across resumes.
    train_seconds, seen = float(meta.get("train_seconds", 0.0)), int(meta.get("seen", 0))
    seen_name = {"tok": "tokens", "ex": "examples"}.get(task.unit, task.unit)
    batches = task.batches(step, meta.get("data_position"))
    clock = time.perf_counter()
    with ctrl_c_noted() as ctrl_c, _closing(progress, checkpointer):
        while step < args.max_steps:
            if ctrl_c:
                raise KeyboardInterrupt
            batch = next(batches)
            state, metrics = train_step(state, sharding.global_batch(batch.arrays, micro_sharding))
            step += 1
            pending.append((step, metrics))
            seen += batch.items
            last = step == args.max_steps
            log_now = step % args.logging_steps == 0 or last
            eval_now = bool(args.eval_steps) and (step % args.eval_steps == 0 or last)
            save_now = (bool(args.save_steps) and step % args.save_steps == 0) or last
            scalars = None
            if log_now or eval_now or save_now:
                window += _fetch_and_check(pending, last_saved)
                pending = []
                now = time.perf_counter()
                train_seconds, clock = train_seconds + now - clock, now
                timing = {"train_seconds": round(train_seconds, 3), seen_name: seen}   # for the records below
            if log_now:
                last_train = {name: float(np.mean([values[name] for _, values in window])) for name in window[0][1]}
                last_train["learning_rate"] = float(schedule(step - 1))   # the rate this step was taken with
                folder.log({"kind": "train", "step": step, **last_train, **timing})
                scalars, window = {"loss": last_train["loss"], "lr": last_train["learning_rate"]}, []
            progress.update(step, batch.items, scalars)
            if eval_now:
                try:
                    last_eval = task.evaluate(state["params"])
                except NonFiniteError as error:
                    raise _stopped(f"evaluation after step {step}: {error}", last_saved) from None
                history.append({"step": step, **last_eval})
                folder.log({"kind": "eval", "step": step, **last_eval, **timing})
                progress.log_eval(step, last_eval)
                if task.keep_best:
                    value = task.score(last_eval)
                    if value is None or best is None or best["value"] is None or value > best["value"]:
                        best = {"step": step, "value": value, "eval": last_eval}
                        best_params = _export(task, state["params"], step, is_main, last_saved)
                    if is_main:
                        task.export_results(_summary(best, history))
                progress.reset_clock()
            if save_now:
                _check_params(state["params"], step, last_saved)
                checkpointer.save(step, state, {"data_position": batch.position, "best": best, "history": history,
                                                "log_window": window, "train_seconds": train_seconds, "seen": seen})
                last_saved = step
                progress.reset_clock()
            if eval_now or save_now:
                clock = time.perf_counter()     # evaluation and saving are not training time
    if not task.keep_best:
        best_params = _export(task, state["params"], step, is_main, last_saved)
    return {"step": step, "train": last_train, "last_eval": last_eval, "best_params": best_params,
            **_summary(best, history)}


@contextlib.contextmanager
def _closing(progress: Progress, checkpointer: TrainCheckpointer):
    try:
        yield
    finally:
        progress.close()
        checkpointer.close()


def _export(task: Task, params, step: int, is_main: bool, last_saved: int | None):
    _check_params(params, step, last_saved)
    host = sharding.to_host(params)
    if is_main:
        task.export(host)
    return host


def _summary(best: dict | None, history: list[dict]) -> dict[str, Any]:
    best = best or {}
    return {"best_step": best.get("step"), "best_metric": best.get("value"), "best_eval": best.get("eval", {}),
            "history": history}
