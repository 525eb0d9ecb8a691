"""Pictures of runs and models: training curves, learned SSM kernels, a GLUE bar chart.

    figure = plot_curves(["pretrained_bigs", "pretrained_bert"], x="tokens")
    save_figure(figure, "curves.png")
    profiles = kernel_profiles(read_params("BiGS_128"), length=512)
    save_figure(plot_kernels(profiles), "kernels.png")

The numbers come from a run's own files, so any `bigs pretrain` or `bigs glue` output folder
(or anything that writes the same metrics.jsonl) can be drawn:

- `read_run(folder)`: the train and eval records of metrics.jsonl (output_dir.py) and, for
  fine-tuning, the task's metric from eval_results.json.
- `kernel_profiles(params)`: per layer, the forward and backward S4D kernels |K[k]| against
  the distance k in tokens (bigs.ssm.kernel), and `reach`, the distance that holds a share
  (default 90%) of the kernel's total |K| mass: how far that SSM mixes tokens.

Every `plot_*` function returns a matplotlib Figure whose lines and bars hold exactly the
values they were given (tests read them back); `save_figure` writes it atomically as PNG.
matplotlib is the `plot` extra (`pip install "bigs[plot]"`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError
from .files import atomic_writer, read_json_object
from .weights import Params, flatten

# x axes of plot_curves: the metrics.jsonl field each reads and its label.
X_AXES = {"step": ("step", "optimizer step"), "tokens": ("tokens", "tokens seen (non-pad)"),
          "examples": ("examples", "examples seen"), "seconds": ("train_seconds", "training wall time (s)")}
# Share of a kernel's |K| mass that `reach` reports the distance of.
REACH_MASS = 0.9


def _pyplot():
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ConfigError('plotting needs matplotlib; install it with: pip install "bigs[plot]"') from None
    matplotlib.use("Agg")                # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


# ------------------------------------------------------------------------------ runs
@dataclass
class Run:
    """One training run's logged numbers.

    name: the label in legends (the folder's name unless given); command: "pretrain", "glue",
    ... (run_settings.json), or None; metric: the fine-tuning task's metric (eval_results.json),
    None for pretraining; train / eval: the metrics.jsonl records of that kind, each a dict
    with step, train_seconds, tokens or examples, and the values logged.
    """

    name: str
    command: str | None
    metric: str | None
    train: list[dict]
    eval: list[dict]

    def eval_values(self) -> tuple[str, list[float]]:
        """(label, values) of the evaluation curve: the held-out MLM loss for pretraining,
        the task's metric on the first evaluation split for fine-tuning."""
        if not self.eval:
            return "", []
        first = self.eval[0]
        if "loss" in first and not isinstance(first["loss"], dict):
            return "held-out MLM loss", [self._number(r, r.get("loss"), "loss") for r in self.eval]
        split = next(k for k, v in first.items() if isinstance(v, dict))
        metric = self.metric or next(iter(first[split]))
        if metric not in first[split]:
            raise DataError(f"run {self.name!r}: eval_results.json names the metric {metric!r}, which its "
                            f"evaluations in metrics.jsonl do not hold ({', '.join(map(str, first[split]))})")
        return f"{split} {metric}", [self._number(r, (r.get(split) or {}).get(metric), f"{split} {metric}")
                                     for r in self.eval]

    def train_losses(self) -> list[float]:
        """The training loss of each train record."""
        return [self._number(r, r.get("loss"), "loss") for r in self.train]

    def _number(self, record: dict, value: Any, what: str) -> float:
        """`value` as a float (NaN and inf pass: they are numbers); DataError naming the run
        and step when it is missing or not a number."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(f"run {self.name!r}: the record of step {record.get('step')} has {what}={value!r}; "
                            "expected a number")
        return float(value)


def read_run(folder: str | os.PathLike, name: str | None = None) -> Run:
    """The Run logged in `folder` (a `bigs pretrain` or `bigs glue` output_dir).

    Raises DataError when the folder does not exist, has no metrics.jsonl, or a line of it is
    not JSON (naming the file and line).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"run folder {str(folder)!r} " + ("is a file, not a folder" if folder.exists() else
                                                         "does not exist"))
    path = folder / "metrics.jsonl"
    if not path.is_file():
        raise DataError(f"{str(folder)!r} has no metrics.jsonl; expected the output_dir of bigs pretrain or "
                        "bigs glue")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; expected the metrics.jsonl a run writes") from None
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            raise DataError(f"{path}:{number}: not a metrics record (a JSON object with an integer step)")
        records.append(record)
    if not records:
        raise DataError(f"{path} holds no records yet")
    command = metric = None
    if (folder / "run_settings.json").is_file():
        command = read_json_object(folder / "run_settings.json", "the settings a run writes").get("command")
    if (folder / "eval_results.json").is_file():
        metric = read_json_object(folder / "eval_results.json", "the results bigs glue writes").get("metric")
    return Run(name or folder.name, command, metric, [r for r in records if r.get("kind") == "train"],
               [r for r in records if r.get("kind") == "eval"])


def plot_curves(runs: Sequence[Run | str | os.PathLike], x: str = "step", title: str | None = None):
    """Two panels: training loss, and the evaluation curve (Run.eval_values), of each run
    against `x` ("step", "tokens", "examples" or "seconds": training wall time, evaluation
    excluded). Runs are Run objects or folders. Returns the Figure; one line per run per panel.

    Raises ConfigError for an unknown x, DataError for a run whose records lack it (logs
    written before bigs 0.3 have no tokens or seconds).
    """
    if x not in X_AXES:
        raise ConfigError(f"x={x!r}; expected one of {', '.join(X_AXES)}")
    field, x_label = X_AXES[x]
    runs = [run if isinstance(run, Run) else read_run(run) for run in runs]
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    labels = {run.name: run.eval_values()[0] for run in runs if run.eval}
    if len(set(labels.values())) > 1:
        shown = "; ".join(f"{name}: {label}" for name, label in labels.items())
        raise DataError(f"these runs evaluate different things ({shown}); plot runs of one kind together")
    eval_label = ""
    for run in runs:
        for records in (run.train, run.eval):
            missing = [r.get("step") for r in records if field not in r]
            if missing:
                counted = next((name for name in ("tokens", "examples") if name in records[0]), None)
                why = (f"it counts {counted} (pretraining counts tokens, fine-tuning examples)" if counted
                       else "it was logged by bigs before 0.3")
                raise DataError(f"run {run.name!r}: the record of step {missing[0]} has no {field!r}: {why}; "
                                "plot it against step or seconds")
        if run.train:
            losses = _drop_non_finite(run, run.train, run.train_losses(), "training loss")
            left.plot([r[field] for r in run.train], losses, label=run.name)
        label, values = run.eval_values()
        if values:
            eval_label = eval_label or label
            values = _drop_non_finite(run, run.eval, values, label)
            right.plot([r[field] for r in run.eval], values, marker="o", markersize=3, label=run.name)
    left.set(xlabel=x_label, ylabel="training loss", title="training loss")
    right.set(xlabel=x_label, ylabel=eval_label or "evaluation", title=eval_label or "evaluation")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    if title:
        figure.suptitle(title)
    return figure


def _drop_non_finite(run: Run, records: list[dict], values: list[float], what: str) -> list[float]:
    """`values` with NaN in place of every non-finite one (a gap in the line, where inf would
    wreck the axis), after one warning on the "bigs" logger naming the run and the steps."""
    bad = [r.get("step") for r, value in zip(records, values) if not math.isfinite(value)]
    if not bad:
        return values
    steps = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    logging.getLogger("bigs").warning(f"run {run.name!r}: the {what} is not finite at {len(bad)} of {len(values)} "
                                      f"logged steps ({steps}); those points are left out of the plot")
    return [value if math.isfinite(value) else math.nan for value in values]


# ---------------------------------------------------------------------------- kernels
@dataclass
class KernelProfile:
    """One layer's two S4D kernels: forward and backward |K[k]| [length] float64, for
    distances k = 0..length-1 tokens, and the distances holding REACH_MASS of each one's mass."""

    layer: int
    forward: np.ndarray
    backward: np.ndarray
    forward_reach: int
    backward_reach: int


def reach(magnitude: np.ndarray, mass: float = REACH_MASS) -> int:
    """The smallest distance d (tokens) with sum(|K|[:d+1]) >= mass * sum(|K|); 0 for a zero kernel."""
    magnitude = np.abs(np.asarray(magnitude, dtype=np.float64))
    total = magnitude.sum()
    if total == 0:
        return 0
    return int(np.searchsorted(np.cumsum(magnitude), mass * total - 1e-12 * total))


def kernel_profiles(params: Params, length: int = 512, mass: float = REACH_MASS) -> list[KernelProfile]:
    """Per encoder layer (in order), the learned kernels of its forward (fs4) and backward
    (bs4) SSMs over `length` tokens, from a BiGS params tree (any head; per-layer as
    bigs.weights.read_params gives it, or stacked as a scan_layers model.params holds it).
    The kernel is bigs.ssm.kernel: K[k] = Re sum_n C'_n exp(k dt A_n).

    Raises DataError when the tree holds no BiGS SSM parameters.
    """
    import jax

    from .ssm import kernel

    layers: dict[int, dict[str, dict[str, np.ndarray]]] = {}
    for path, value in flatten(params).items():
        if len(path) < 3 or path[-2] not in ("fs4", "bs4"):
            continue
        value = np.asarray(value, np.float32)
        # per-layer (layer/<i>/fs4/...) as saved, or stacked (layer/fs4/... [layers, ...]) as scanned in memory
        per_layer = {int(path[-3]): value} if path[-3].isdigit() else dict(enumerate(value))
        for index, leaf in per_layer.items():
            layers.setdefault(index, {}).setdefault(path[-2], {})[path[-1]] = leaf
    if not layers:
        raise DataError("no SSM parameters (encoder/layer/<n>/fs4, bs4) in this checkpoint; is it a BiGS model?")
    profiles = []
    with jax.default_device(jax.devices("cpu")[0]):
        for index in sorted(layers):
            magnitudes = {}
            for direction in ("fs4", "bs4"):
                p = layers[index][direction]
                values = kernel(p["A_re"], p["A_im"], p["C"], p["log_step"], length)
                magnitudes[direction] = np.abs(np.asarray(values, np.float64))
            profiles.append(KernelProfile(index, magnitudes["fs4"], magnitudes["bs4"],
                                          reach(magnitudes["fs4"], mass), reach(magnitudes["bs4"], mass)))
    return profiles


def plot_kernels(profiles: Sequence[KernelProfile], initial: Sequence[KernelProfile] | None = None,
                 title: str | None = None):
    """One panel per layer: forward and backward |K| against distance (log-log), each with a
    dotted line at its 90%-mass reach; with `initial`, the kernels at initialisation in grey.
    Returns the Figure. Line labels name layer, direction and reach."""
    plt = _pyplot()
    columns = min(4, len(profiles))
    rows = -(-len(profiles) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False,
                                layout="constrained")
    for panel, profile in zip(axes.flat, profiles):
        distance = np.arange(1, len(profile.forward) + 1)     # k + 1 so that k = 0 shows on a log axis
        if initial is not None:
            start = initial[profile.layer]
            panel.plot(distance, start.forward, color="0.6", linestyle="--", linewidth=1,
                       label=f"init forward (reach {start.forward_reach})")
            panel.plot(distance, start.backward, color="0.8", linestyle=":", linewidth=1,
                       label=f"init backward (reach {start.backward_reach})")
        for values, reached, color, direction in ((profile.forward, profile.forward_reach, "C0", "forward"),
                                                   (profile.backward, profile.backward_reach, "C3", "backward")):
            panel.plot(distance, values, color=color, label=f"{direction} (reach {reached})")
            panel.axvline(reached + 1, color=color, linestyle=":", linewidth=1)
        top = max(profile.forward.max(), profile.backward.max())
        panel.set(xscale="log", yscale="log", title=f"layer {profile.layer}", xlabel="distance k + 1 (tokens)",
                  ylabel="|K[k]|", ylim=(top * 1e-6, top * 2) if top > 0 else None)
        panel.grid(alpha=0.3)
        panel.legend(fontsize=7)
    for panel in axes.flat[len(profiles):]:
        panel.set_visible(False)
    figure.suptitle(title or f"SSM kernels; dotted: distance holding {REACH_MASS:.0%} of |K|")
    return figure


# -------------------------------------------------------------------------------- GLUE
def plot_glue_bars(table: Mapping[str, Mapping[str, Sequence[float]]], title: str | None = None):
    """Grouped bars of a GLUE table {model: {task: [value per seed]}}: the mean per task and
    model, with the standard deviation over seeds as the error bar (0 for one seed). Returns
    the Figure; its bar containers are in model order, bars in the order tasks first appear."""
    plt = _pyplot()
    models = list(table)
    tasks = list(dict.fromkeys(task for values in table.values() for task in values))   # in the table's order
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.2), layout="constrained")
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        means = [float(np.mean(table[model][t])) if table[model].get(t) else np.nan for t in tasks]
        stds = [float(np.std(table[model][t])) if table[model].get(t) else 0.0 for t in tasks]
        axes.bar(np.arange(len(tasks)) + (index - (len(models) - 1) / 2) * width, means, width, yerr=stds,
                 capsize=3, label=model)
    axes.set_xticks(np.arange(len(tasks)), tasks)
    axes.set(ylabel="dev metric (mean ± std over seeds)", title=title or "GLUE dev")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def save_figure(figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write `figure` as a PNG to `path` atomically (the old file stays until the new one is
    whole) and close it. Returns the path."""
    plt = _pyplot()
    with atomic_writer(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
    plt.close(figure)
    return Path(path)


def profiles_json(profiles: Sequence[KernelProfile]) -> list[dict[str, Any]]:
    """The reaches of kernel_profiles as JSON-ready records (one per layer)."""
    return [{"layer": p.layer, "forward_reach": p.forward_reach, "backward_reach": p.backward_reach}
            for p in profiles]
