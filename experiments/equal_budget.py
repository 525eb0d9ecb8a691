"""BiGS against BERT with equal pretraining, then equal fine-tuning on five GLUE tasks.

    python experiments/equal_budget.py --budget small --out study/      # about 80 minutes on 2 CPU cores
    python experiments/equal_budget.py --budget tiny --out /tmp/study   # every stage in a minute (tests)

The claim tested is the paper's: pretrained the same way, BiGS matches BERT on GLUE
(Wang et al. 2022, Table 1). Stages, each skipped when its result is already in --out (so
an interrupted study resumes where it stopped):

  shards/                 `bigs build-shards` of ../shared/data/corpus (BERT uncased WordPiece)
  pretrain/bigs/          `bigs pretrain` (bigs.train.pretrain.run_pretraining)
  pretrain/bert/          Hugging Face BertForMaskedLM in PyTorch, trained by `pretrain_bert` below
  finetune/<model>/<task>/seed<s>/
                          BiGS: `bigs glue` (bigs.train.finetune.run), exact padding;
                          BERT: `finetune_bert` below, on the same batches
  results.json, table.md, curves_tokens.png, curves_seconds.png, glue.png, kernels.png

What "equal" means here, and how it is kept:
- Both models have the same depth, width and parameter count (BERT's intermediate size is
  chosen to match BiGS's count), the same vocabulary and tokenizer.
- Pretraining: both read the same shards through the same `ShardDataset` (same seed, so the
  same sequences in the same order and the same dynamic masks), for the same number of
  steps and tokens, with AdamW of the same hyperparameters, the same decay mask (no decay on
  biases and LayerNorm weights), the same warm-up + cosine schedule (bigs.train.optim.
  make_schedule, evaluated per step) and the same gradient clipping. The loss is the mean
  cross-entropy over the labelled tokens of the batch for both.
- BERT computes its MLM logits at the labelled positions only: BertForMaskedLM's encoder
  (`model.bert`) runs on the whole batch, then its own prediction head (`model.cls`, the tied
  decoder included) on the hidden states of the masked tokens. The Hugging Face forward
  computes vocabulary logits at all 128 positions and discards 85% of them; on this CPU that
  made BERT's step 8x slower than BiGS's, which would not be a fair wall-time comparison.
- Both log the same metrics.jsonl records (step, loss, held-out loss and accuracy, tokens
  seen, training wall time with evaluation excluded), so `bigs plot curves` draws both.
- Fine-tuning: each pretrained model and each architecture from random initialisation runs
  every task with the same hyperparameters, the same batches in the same order
  (bigs.data.batching.update_order), evaluation after every epoch, and the task's official
  metric (bigs.metrics) of the best evaluation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
MODELS = ("bigs", "bert", "bigs_random", "bert_random")
LABELS = {"bigs": "BiGS pretrained", "bert": "BERT pretrained", "bigs_random": "BiGS random init",
          "bert_random": "BERT random init"}
TASKS = ("sst2", "cola", "mrpc", "stsb", "rte")
VOCAB = str(SHARED / "data" / "vocab" / "bert-base-uncased-vocab.txt")


@dataclasses.dataclass(frozen=True)
class Budget:
    """Everything a study's size depends on; both architectures get the same numbers."""

    # shape (BiGS's intermediate_size is its gate width; BERT's is chosen to match parameters)
    layers: int
    hidden_size: int
    bigs_intermediate_size: int
    num_ssm: int
    bert_intermediate_size: int
    bert_heads: int
    # pretraining
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    pretrain_warmup: int
    eval_every: int
    log_every: int
    max_train_shards: int | None
    # fine-tuning
    tasks: tuple[str, ...]
    seeds_small_tasks: tuple[int, ...]     # MRPC, STS-B, RTE, CoLA
    seeds_large_tasks: tuple[int, ...]     # SST-2
    finetune_lr: float
    finetune_epochs: float
    finetune_batch: int
    finetune_max_seq_length: int
    max_train_samples: int | None
    max_eval_samples: int | None
    # files under ../shared/data/corpus to pretrain on ("" : all of it)
    corpus: tuple[str, ...] = ("",)
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    max_grad_norm: float = 1.0
    cosine_alpha: float = 0.1
    seed: int = 0


_SMALL = Budget(layers=2, hidden_size=128, bigs_intermediate_size=256, num_ssm=16, bert_intermediate_size=384,
                bert_heads=2, pretrain_steps=3000, pretrain_batch=64, pretrain_lr=1e-3, pretrain_warmup=300,
                eval_every=200, log_every=50, max_train_shards=None, tasks=TASKS,
                seeds_small_tasks=(0, 1, 2), seeds_large_tasks=(0,), finetune_lr=5e-4, finetune_epochs=3,
                finetune_batch=32, finetune_max_seq_length=128, max_train_samples=6000, max_eval_samples=None)
BUDGETS = {
    # about 80 minutes on 2 CPU cores: 3000 pretraining steps (12.3M tokens), 6000 examples a task
    "small": _SMALL,
    # about 35 minutes: the same with 1200 pretraining steps and 3000 examples a task
    "short": dataclasses.replace(_SMALL, pretrain_steps=1200, pretrain_warmup=120, eval_every=100,
                                 max_train_samples=3000),
    "tiny": Budget(layers=1, hidden_size=32, bigs_intermediate_size=64, num_ssm=4, bert_intermediate_size=80,
                   bert_heads=2, pretrain_steps=4, pretrain_batch=8, pretrain_lr=1e-3, pretrain_warmup=1,
                   eval_every=2, log_every=1, max_train_shards=1, tasks=("rte", "stsb"),
                   seeds_small_tasks=(0,), seeds_large_tasks=(0,), finetune_lr=1e-3, finetune_epochs=1,
                   finetune_batch=8, finetune_max_seq_length=32, max_train_samples=16, max_eval_samples=16,
                   corpus=("gutenberg-nltk/blake-poems.txt", "gutenberg-nltk/shakespeare-caesar.txt")),
}


# ------------------------------------------------------------------------------ stages
class Stages:
    """Runs each stage once: a stage whose `done.json` exists in its folder is skipped;
    otherwise its folder is cleared of a half-made result and the stage runs again.
    done.json records the stage's wall time (seconds)."""

    def __init__(self, out: Path):
        self.out = out
        self.seconds: dict[str, float] = {}

    def run(self, name: str, folder: Path, work, resumable: bool = False) -> dict[str, Any]:
        marker = folder / "done.json"
        if marker.is_file():
            record = json.loads(marker.read_text(encoding="utf-8"))
            self.seconds[name] = record["seconds"]
            print(f"[study] {name}: done already ({record['seconds']:.0f} s), skipped", flush=True)
            return record
        if folder.exists() and not resumable:
            shutil.rmtree(folder)            # a stage that stopped half-way; it made this folder
        print(f"[study] {name} ...", flush=True)
        start = time.perf_counter()
        result = work(folder) or {}
        record = {"seconds": round(time.perf_counter() - start, 2), **result}
        from bigs.files import write_json
        write_json(marker, record)
        self.seconds[name] = record["seconds"]
        print(f"[study] {name}: {record['seconds']:.0f} s", flush=True)
        return record


def build_shards(folder: Path, budget: Budget) -> dict:
    from bigs.data.build import build_shards as build

    inputs = [str(SHARED / "data" / "corpus" / name) for name in budget.corpus]
    info = build(inputs, str(folder), VOCAB, max_seq_length=128, next_sentence=False, seed=budget.seed)
    return {"num_examples": info["num_examples"], "num_masked_tokens": info["num_masked_tokens"]}


def pretrain_bigs(folder: Path, shards: Path, budget: Budget) -> dict:
    from bigs.train.pretrain import PretrainArgs, run_pretraining

    args = PretrainArgs(
        output_dir=str(folder), dataset_path=str(shards), max_seq_length=128, n_layers=budget.layers,
        hidden_size=budget.hidden_size, intermediate_size=budget.bigs_intermediate_size, num_ssm=budget.num_ssm,
        dynamic_masking=True, max_train_shards=budget.max_train_shards, seed=budget.seed,
        max_steps=budget.pretrain_steps, per_device_train_batch_size=budget.pretrain_batch,
        per_device_eval_batch_size=budget.pretrain_batch, **_optimizer(budget, budget.pretrain_lr),
        warmup_steps=budget.pretrain_warmup, schedule_type="cosine", cosine_schedule_alpha=budget.cosine_alpha,
        save_steps=max(budget.eval_every, budget.pretrain_steps // 4), eval_steps=budget.eval_every,
        logging_steps=budget.log_every, disable_tqdm=True)
    result = run_pretraining(args)
    return {"eval": result["eval"], "parameters": _count_flax(folder)}


def _optimizer(budget: Budget, learning_rate: float) -> dict:
    return {"learning_rate": learning_rate, "weight_decay": budget.weight_decay, "adam_beta1": budget.adam_beta1,
            "adam_beta2": budget.adam_beta2, "adam_epsilon": budget.adam_epsilon,
            "max_grad_norm": budget.max_grad_norm}


def _count_flax(folder: Path) -> int:
    from bigs.weights import flatten, read_params

    return int(sum(np.asarray(leaf).size for leaf in flatten(read_params(str(folder))).values()))


# ------------------------------------------------------------------------- BERT side
def bert_config(budget: Budget, vocab_size: int, **extra):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=budget.hidden_size, num_hidden_layers=budget.layers,
                      num_attention_heads=budget.bert_heads, intermediate_size=budget.bert_intermediate_size,
                      max_position_embeddings=128, type_vocab_size=2, **extra)


def torch_adamw(model, budget: Budget, learning_rate: float):
    """AdamW with BiGS's groups: no weight decay on biases and LayerNorm weights (optim.param_group)."""
    import torch

    no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": budget.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=learning_rate,
                             betas=(budget.adam_beta1, budget.adam_beta2), eps=budget.adam_epsilon)


def mlm_at_labels(model, arrays: dict[str, Any]):
    """(summed loss, correct, count) of BertForMaskedLM on one shard batch, with vocabulary
    logits at the labelled positions only: model.bert on the batch, model.cls (its own head
    and tied decoder) on the masked tokens' hidden states."""
    import torch

    hidden = model.bert(input_ids=arrays["input_ids"], attention_mask=arrays["attention_mask"],
                        token_type_ids=arrays["token_type_ids"]).last_hidden_state
    labelled = arrays["labels"] != -100
    logits = model.cls(hidden[labelled]).float()
    targets = arrays["labels"][labelled]
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    return loss, (logits.argmax(-1) == targets).sum(), targets.numel()


def _torch_batch(batch: dict[str, np.ndarray]) -> dict:
    import torch

    from bigs.train.pretrain import model_inputs

    return {name: torch.from_numpy(np.asarray(values, np.int64)) for name, values in model_inputs(batch).items()}


def pretrain_bert(folder: Path, shards: Path, budget: Budget) -> dict:
    """BertForMaskedLM on the shards `bigs pretrain` read, with the same order, masks, steps,
    optimizer and schedule; writes metrics.jsonl like the loop's, and the model (save_pretrained)."""
    import torch

    from bigs.data.shards import ShardDataset
    from bigs.files import append_line, write_json
    from bigs.train.optim import make_schedule
    from transformers import BertForMaskedLM

    torch.manual_seed(budget.seed)
    train_data = ShardDataset(str(shards), budget.max_train_shards, seed=budget.seed, dynamic_masking=True)
    eval_data = ShardDataset(str(shards), seed=budget.seed, split="test", shuffle=False,
                             special_tokens=train_data.special_tokens)
    model = BertForMaskedLM(bert_config(budget, train_data.special_tokens.vocab_size))
    optimizer = torch_adamw(model, budget, budget.pretrain_lr)
    schedule = make_schedule("cosine", budget.pretrain_lr, budget.pretrain_warmup, budget.pretrain_steps,
                             budget.cosine_alpha)
    folder.mkdir(parents=True)
    write_json(folder / "run_settings.json", {"command": "bert-pretrain", "budget": dataclasses.asdict(budget)})
    metrics = folder / "metrics.jsonl"

    def evaluate() -> dict:
        model.eval()
        total, correct, count = 0.0, 0, 0
        with torch.no_grad():
            for batch, _ in eval_data.iterate(budget.pretrain_batch, num_epochs=1, drop_remainder=False):
                loss, right, n = mlm_at_labels(model, _torch_batch(batch))
                total, correct, count = total + float(loss), correct + int(right), count + n
        model.train()
        return {"loss": total / max(count, 1), "accuracy": correct / max(count, 1), "masked_tokens": count}

    train_seconds, tokens, window, last_eval = 0.0, 0, [], None
    batches = train_data.iterate(budget.pretrain_batch)
    model.train()
    clock = time.perf_counter()
    for step in range(1, budget.pretrain_steps + 1):
        batch, _ = next(batches)
        for group in optimizer.param_groups:
            group["lr"] = float(schedule(step - 1))
        loss_sum, correct, count = mlm_at_labels(model, _torch_batch(batch))
        (loss_sum / count).backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), budget.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += int(batch["input_mask"].sum())
        window.append((float(loss_sum.detach()) / count, int(correct) / count, float(grad_norm)))
        if not math.isfinite(window[-1][0]):
            raise FloatingPointError(f"BERT pretraining: loss {window[-1][0]} at step {step}")
        last = step == budget.pretrain_steps
        if step % budget.log_every == 0 or last or step % budget.eval_every == 0:
            now = time.perf_counter()
            train_seconds, clock = train_seconds + now - clock, now
        timing = {"train_seconds": round(train_seconds, 3), "tokens": tokens}
        if step % budget.log_every == 0 or last:
            mean = np.mean(window, axis=0)
            append_line(metrics, json.dumps({"kind": "train", "step": step, "loss": mean[0], "accuracy": mean[1],
                                             "grad_norm": mean[2], "learning_rate": float(schedule(step - 1)),
                                             **timing}))
            window = []
        if step % budget.eval_every == 0 or last:
            last_eval = evaluate()
            append_line(metrics, json.dumps({"kind": "eval", "step": step, **last_eval, **timing}))
            clock = time.perf_counter()
    model.save_pretrained(folder)
    shutil.copy(shards / "vocab.txt", folder / "vocab.txt")
    return {"eval": last_eval, "parameters": int(sum(p.numel() for p in model.parameters()))}


# --------------------------------------------------------------------------- fine-tuning
def task_data(task: str, budget: Budget):
    """({split: Encoded}, TaskSpec) of a GLUE task, read and encoded as `bigs glue` does."""
    from bigs.data.batching import encode
    from bigs.tokenizer import BiGSTokenizer
    from bigs.train.finetune import FinetuneConfig, load_data

    config = FinetuneConfig(output_dir="unused", task_name=task, data_dir=str(SHARED / "data" / "glue"),
                            max_train_samples=budget.max_train_samples, max_eval_samples=budget.max_eval_samples)
    data, spec = load_data(config)
    tokenizer = BiGSTokenizer.from_vocab(VOCAB)
    return {split: encode(tokenizer, examples, budget.finetune_max_seq_length, f"{split} examples")
            for split, examples in data.items() if examples.labels is not None}, spec


def schedule_steps(num_train: int, budget: Budget) -> tuple[int, int]:
    """(total steps, warm-up steps) of one fine-tuning run: the same for both architectures."""
    from bigs.data.batching import steps_per_epoch

    total = max(1, math.ceil(budget.finetune_epochs * steps_per_epoch(num_train, budget.finetune_batch)))
    return total, int(budget.warmup_fraction * total)


def finetune_bigs(folder: Path, task: str, seed: int, start: Path | None, budget: Budget, config_of: Path) -> dict:
    from bigs.train.finetune import FinetuneConfig, run

    encoded, _ = task_data(task, budget)
    total, warmup = schedule_steps(len(encoded["train"]), budget)
    # random initialisation: the pretrained model's config.json (same architecture), fresh weights
    random_init = {} if start is not None else {"config_name": str(config_of / "config.json"),
                                                 "tokenizer_name": VOCAB}
    config = FinetuneConfig(
        output_dir=str(folder), model_name_or_path=str(start) if start else None, task_name=task,
        data_dir=str(SHARED / "data" / "glue"), max_seq_length=budget.finetune_max_seq_length,
        batching="longest", pad_mode="exact", num_train_epochs=budget.finetune_epochs, do_train=True, do_eval=True,
        max_train_samples=budget.max_train_samples, max_eval_samples=budget.max_eval_samples, seed=seed,
        per_device_train_batch_size=budget.finetune_batch, per_device_eval_batch_size=128,
        warmup_steps=warmup, schedule_type="linear", **_optimizer(budget, budget.finetune_lr),
        logging_steps=max(1, total // 20), disable_tqdm=True, **random_init)
    results = run(config)
    return {"metric": results["metric"], "best": results["best_metric"], "best_step": results["best_step"],
            "history": results["history"], "steps": total}


def finetune_bert(folder: Path, task: str, seed: int, start: Path | None, budget: Budget) -> dict:
    """BertForSequenceClassification (from the pretrained BERT, or random) on the batches
    `bigs glue` draws for the same seed, with the same optimizer and schedule; the best
    per-epoch evaluation, as `bigs glue` reports."""
    import torch

    from bigs.data.batching import Batching, make_batch, update_order
    from bigs.files import append_line
    from bigs.train.finetune import score
    from bigs.train.optim import make_schedule
    from transformers import BertForSequenceClassification

    encoded, spec = task_data(task, budget)
    train = encoded["train"]
    total_steps, warmup = schedule_steps(len(train), budget)
    torch.manual_seed(seed)
    if start is not None:
        model = BertForSequenceClassification.from_pretrained(start, num_labels=spec.num_labels)
    else:
        model = BertForSequenceClassification(bert_config(budget, 30522, num_labels=spec.num_labels))
    optimizer = torch_adamw(model, budget, budget.finetune_lr)
    schedule = make_schedule("linear", budget.finetune_lr, warmup, total_steps)
    batching = Batching("longest", budget.finetune_max_seq_length)
    per_epoch = math.ceil(len(train) / budget.finetune_batch)
    folder.mkdir(parents=True)
    metrics = folder / "metrics.jsonl"

    def tensors(arrays):
        return {name: torch.from_numpy(np.asarray(values)) for name, values in arrays.items()}

    def loss_of(logits, batch):
        weights = batch["weights"]
        if spec.is_regression:
            per_example = (logits[:, 0] - batch["labels"].float()) ** 2
        else:
            per_example = torch.nn.functional.cross_entropy(logits, batch["labels"].long(), reduction="none")
        return (per_example * weights).sum() / weights.sum()

    def evaluate() -> dict:
        model.eval()
        results = {}
        with torch.no_grad():
            for split in spec.eval_splits:
                data, outputs = encoded[split], []
                order = np.argsort(data.lengths, kind="stable")
                for i in range(0, len(order), 128):
                    indices = order[i:i + 128]
                    batch = tensors(make_batch(data, indices, len(indices), int(data.lengths[indices].max()), 0))
                    outputs.append(model(input_ids=batch["input_ids"].long(), token_type_ids=batch[
                        "token_type_ids"].long(), attention_mask=batch["attention_mask"].long()).logits.float())
                logits = np.empty((len(order), spec.num_labels), np.float32)
                logits[order] = torch.cat(outputs).numpy()
                results[split] = score(spec, logits, data.labels)
        model.train()
        return results

    model.train()
    best, history, step, train_seconds, examples, clock = None, [], 0, 0.0, 0, time.perf_counter()
    while step < total_steps:
        epoch = step // per_epoch
        for indices in update_order(train.lengths, budget.finetune_batch, epoch, seed, batching.bucket):
            batch = tensors(make_batch(train, indices, budget.finetune_batch,
                                       batching.width(int(train.lengths[indices].max())), 0))
            for group in optimizer.param_groups:
                group["lr"] = float(schedule(step))
            logits = model(input_ids=batch["input_ids"].long(), token_type_ids=batch["token_type_ids"].long(),
                           attention_mask=batch["attention_mask"].long()).logits.float()
            loss = loss_of(logits, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), budget.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step, examples = step + 1, examples + len(indices)
            loss = loss.detach()
            if not math.isfinite(float(loss)):
                raise FloatingPointError(f"BERT fine-tuning on {task}: loss {float(loss)} at step {step}")
            end_of_epoch = step % per_epoch == 0 or step == total_steps
            if end_of_epoch:
                now = time.perf_counter()
                train_seconds = train_seconds + now - clock
                timing = {"train_seconds": round(train_seconds, 3), "examples": examples}
                append_line(metrics, json.dumps({"kind": "train", "step": step, "loss": float(loss),
                                                 "learning_rate": float(schedule(step - 1)), **timing}))
                evaluation = evaluate()
                append_line(metrics, json.dumps({"kind": "eval", "step": step, **evaluation, **timing}))
                history.append({"step": step, **evaluation})
                value = evaluation[spec.eval_splits[0]][spec.metric]
                if best is None or value > best[1]:
                    best = (step, value)
                clock = time.perf_counter()
            if step == total_steps:
                break
    return {"metric": spec.metric, "best": best[1], "best_step": best[0], "history": history, "steps": total_steps}


# ------------------------------------------------------------------------------ report
def seeds_for(task: str, budget: Budget) -> tuple[int, ...]:
    return budget.seeds_large_tasks if task == "sst2" else budget.seeds_small_tasks


def glue_table(results: dict) -> dict[str, dict[str, list[float]]]:
    """{model label: {task: [best metric per seed]}} from results["finetune"]."""
    table: dict[str, dict[str, list[float]]] = {}
    for model, tasks in results["finetune"].items():
        table[LABELS[model]] = {task: [run["best"] for run in runs.values()] for task, runs in tasks.items()}
    return table


def table_markdown(table: dict[str, dict[str, list[float]]], metrics: dict[str, str]) -> str:
    """Markdown: one row per model, one column per task (mean ± std over seeds, x100), and the
    average of the task means."""
    tasks = [t for t in TASKS if any(t in values for values in table.values())]
    head = ["model", *[f"{t.upper()} ({metrics[t]}, n={len(next(iter(table.values()))[t])})" for t in tasks],
            "average"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, values in table.items():
        cells = []
        for task in tasks:
            runs = np.asarray(values[task]) * 100
            cells.append(f"{runs.mean():.1f} ± {runs.std():.1f}" if len(runs) > 1 else f"{runs.mean():.1f}")
        average = np.mean([np.mean(values[t]) for t in tasks]) * 100
        lines.append("| " + " | ".join([model, *cells, f"{average:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def report(out: Path, results: dict, pretrained: dict[str, Path], initial_seed: int) -> None:
    """results.json, table.md and the pictures."""
    from bigs import plot
    from bigs.files import write_json, write_text
    from bigs.modeling import FlaxBiGSForMaskedLM
    from bigs.config import BiGSConfig
    from bigs.weights import read_params
    import jax

    table = glue_table(results)
    metrics = {task: run["metric"] for tasks in results["finetune"].values() for task, runs in tasks.items()
               for run in runs.values()}
    write_text(out / "table.md", table_markdown(table, metrics))
    runs = [plot.read_run(pretrained["bigs"], "BiGS"), plot.read_run(pretrained["bert"], "BERT")]
    for x in ("tokens", "seconds"):
        plot.save_figure(plot.plot_curves(runs, x=x, title="pretraining, equal budget"), out / f"curves_{x}.png")
    plot.save_figure(plot.plot_glue_bars(table, title="GLUE dev, best epoch (mean ± std over seeds)"),
                     out / "glue.png")
    learned = plot.kernel_profiles(read_params(str(pretrained["bigs"])), length=128)
    fresh = FlaxBiGSForMaskedLM(BiGSConfig.from_pretrained(str(pretrained["bigs"])), _do_init=False)
    initial = plot.kernel_profiles(fresh.init_weights(jax.random.PRNGKey(initial_seed)), length=128)
    plot.save_figure(plot.plot_kernels(learned, initial, title="pretrained BiGS: SSM kernels (grey: at init)"),
                     out / "kernels.png")
    results["kernels"] = {"length": 128, "learned": plot.profiles_json(learned), "initial": plot.profiles_json(initial)}
    results["table"] = table
    write_json(out / "results.json", results)


# -------------------------------------------------------------------------------- main
class StudyError(Exception):
    """A study folder that cannot be used as asked (it holds a study of another budget)."""


def check_budget(out: Path, budget: Budget) -> None:
    """Record the budget in out/budget.json, or check that the study there has this budget:
    finished stages of another budget must not be reused. StudyError, naming the saved
    budget (or, for an edited one, the first field that differs)."""
    from bigs.files import write_json

    path = out / "budget.json"
    as_json = lambda b: json.loads(json.dumps(dataclasses.asdict(b)))  # noqa: E731  (tuples become lists)
    current = as_json(budget)
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved == current:
            return
        named = next((name for name, known in BUDGETS.items() if as_json(known) == saved), None)
        if named is not None:
            raise StudyError(f"{out} holds a study of --budget {named}, not this one; rerun with --budget {named} "
                             "to continue it, or give another --out")
        field = next(name for name in {**saved, **current} if saved.get(name) != current.get(name))
        raise StudyError(f"{out} holds a study with {field}={saved.get(field)!r}, not {current.get(field)!r}; "
                         "rerun with that budget to continue it, or give another --out")
    if out.is_dir() and any(out.iterdir()):
        raise StudyError(f"{out} holds files and no study (no budget.json); give an empty or new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, current)


def run_study(out: Path, budget: Budget) -> dict:
    """Run (or resume) every stage in `out`; returns the results written to results.json.
    Raises StudyError when `out` holds another budget's study or files of its own."""
    check_budget(out, budget)
    stages = Stages(out)
    shards = out / "shards"
    stages.run("shards", shards, lambda f: build_shards(f, budget))
    pretrained = {"bigs": out / "pretrain" / "bigs", "bert": out / "pretrain" / "bert"}
    pretraining = {
        "bigs": stages.run("pretrain bigs", pretrained["bigs"], lambda f: pretrain_bigs(f, shards, budget),
                           resumable=True),
        "bert": stages.run("pretrain bert", pretrained["bert"], lambda f: pretrain_bert(f, shards, budget)),
    }
    finetune: dict[str, dict[str, dict[str, dict]]] = {}
    for task in budget.tasks:
        for seed in seeds_for(task, budget):
            for model in MODELS:
                start = pretrained.get(model)
                folder = out / "finetune" / model / task / f"seed{seed}"
                if model.startswith("bigs"):
                    work = lambda f, t=task, s=seed, p=start: finetune_bigs(f, t, s, p, budget, pretrained["bigs"])  # noqa: E731
                else:
                    work = lambda f, t=task, s=seed, p=start: finetune_bert(f, t, s, p, budget)  # noqa: E731
                record = stages.run(f"finetune {model} {task} seed {seed}", folder, work)
                finetune.setdefault(model, {}).setdefault(task, {})[str(seed)] = record
    tokens = budget.pretrain_steps * budget.pretrain_batch * 128
    results = {"budget": dataclasses.asdict(budget), "pretrain": pretraining, "finetune": finetune,
               "stage_seconds": stages.seconds, "pretrain_token_slots": tokens}
    report(out, results, pretrained, budget.seed)
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equal_budget.py", description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=tuple(BUDGETS), default="small",
                        help="study size: small (about 80 minutes on 2 CPU cores), short (about 35 minutes) or "
                             "tiny (every stage in a minute, for tests)")
    parser.add_argument("--out", required=True, help="folder for every stage's output; rerun to resume")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (SHARED / "data" / "corpus").is_dir():
        print(f"equal_budget: error: {SHARED / 'data'} is missing; the study needs ../shared/data", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as transformers_logging

    from bigs.cli.common import setup_logging

    setup_logging()                               # one console: the bigs commands' warning lines
    transformers_logging.set_verbosity_error()   # the load report of a new classifier head, every run
    transformers_logging.disable_progress_bar()  # and its "Loading weights" bar
    start = time.perf_counter()
    try:
        results = run_study(Path(args.out), BUDGETS[args.budget])
    except StudyError as error:
        print(f"equal_budget: error: {error}", file=sys.stderr)
        return 2
    print((Path(args.out) / "table.md").read_text(encoding="utf-8"))
    print(f"[study] total {time.perf_counter() - start:.0f} s this call; stages: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in results["stage_seconds"].items()))
    return 0


if __name__ == "__main__":
    from bigs.runtime import relaunch_with_hugepages

    relaunch_with_hugepages(say_now=False)
    sys.exit(main())
