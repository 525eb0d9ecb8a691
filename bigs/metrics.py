"""Evaluation metrics: the official GLUE metric of each task, and a generic set for user tasks.

Keys follow the GLUE metric of `evaluate`/`datasets` ("matthews_correlation", "accuracy",
"f1", "pearson", "spearmanr"), which the original `run_glue.py` logged; tasks with two
metrics also get their mean as "combined". MNLI's matched and mismatched sets are separate
evaluation splits: call `compute_metrics("mnli", ...)` once for each.

A correlation of a constant vector is undefined; it is reported as 0.0 (sklearn does the
same for the Matthews correlation) so that best-checkpoint selection never sees NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .data.glue import get_task
from .errors import InputError


def _accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"accuracy": float(accuracy_score(labels, predictions))}


def _matthews(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {"matthews_correlation": float(matthews_corrcoef(labels, predictions))}


def _f1_accuracy(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Binary F1 of the positive class 1 (paraphrase / duplicate), accuracy, and their mean."""
    accuracy = float(accuracy_score(labels, predictions))
    f1 = float(f1_score(labels, predictions, pos_label=1, average="binary", zero_division=0.0))
    return {"accuracy": accuracy, "f1": f1, "combined": (accuracy + f1) / 2}


def _correlation(function, predictions: np.ndarray, labels: np.ndarray) -> float:
    if np.ptp(predictions) == 0 or np.ptp(labels) == 0:
        return 0.0
    return float(function(predictions, labels)[0])


def _pearson_spearman(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    pearson = _correlation(stats.pearsonr, predictions, labels)
    spearman = _correlation(stats.spearmanr, predictions, labels)
    return {"pearson": pearson, "spearmanr": spearman, "combined": (pearson + spearman) / 2}


_GLUE_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {
    "cola": _matthews,
    "sst2": _accuracy,
    "mrpc": _f1_accuracy,
    "stsb": _pearson_spearman,
    "qqp": _f1_accuracy,
    "mnli": _accuracy,
    "qnli": _accuracy,
    "rte": _accuracy,
    "wnli": _accuracy,
}


def _prepare(predictions, labels, is_regression: bool) -> tuple[np.ndarray, np.ndarray]:
    """Flat [n] arrays; [n, num_labels] logits become class ids ([n, 1] a regression output)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels).reshape(-1)
    for name, values in (("predictions", predictions), ("labels", labels)):
        if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
            index = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0])
            raise InputError(f"{name} hold a non-finite value at example {index}; a NaN is never scored")
    if predictions.ndim == 2:
        predictions = predictions[:, 0] if is_regression and predictions.shape[1] == 1 else predictions.argmax(-1)
    predictions = predictions.reshape(-1)
    if predictions.shape != labels.shape:
        raise InputError(
            f"{predictions.shape[0]} predictions but {labels.shape[0]} labels; expected one prediction per label"
        )
    if labels.size == 0:
        raise InputError("no predictions to score; expected at least one example")
    if is_regression:
        return predictions.astype(np.float64), labels.astype(np.float64)
    return predictions.astype(np.int64), labels.astype(np.int64)


def compute_metrics(task: str, predictions, labels) -> dict[str, float]:
    """The official GLUE metrics of `task` (a GLUE task name).

    Args:
      predictions: [n] class ids (or [n, num_labels] logits); [n] floats for STS-B.
      labels: [n] label ids, or float targets for STS-B.
    """
    spec = get_task(task)
    predictions, labels = _prepare(predictions, labels, spec.is_regression)
    return _GLUE_METRICS[spec.name](predictions, labels)


def compute_generic_metrics(predictions, labels, is_regression: bool) -> dict[str, float]:
    """Metrics for a user task: accuracy and macro-F1, or Pearson, Spearman and MSE."""
    predictions, labels = _prepare(predictions, labels, is_regression)
    if is_regression:
        metrics = _pearson_spearman(predictions, labels)
        del metrics["combined"]
        return {**metrics, "mse": float(np.mean((predictions - labels) ** 2))}
    macro_f1 = float(f1_score(labels, predictions, average="macro", zero_division=0.0))
    return {**_accuracy(predictions, labels), "macro_f1": macro_f1}


def main_metric(task: str) -> str:
    """Key of `compute_metrics(task, ...)` that selects the best checkpoint (higher is better)."""
    return get_task(task).metric
