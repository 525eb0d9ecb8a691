"""Metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from bigs.errors import DataError, InputError
from bigs.metrics import compute_generic_metrics, compute_metrics, main_metric


def test_matthews_cola():
    # TP=2 FN=1 TN=1 FP=1: (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 1/6.
    result = compute_metrics("cola", [1, 1, 0, 0, 1], [1, 1, 1, 0, 0])
    assert result == {"matthews_correlation": pytest.approx(1 / 6)}
    # Constant predictions: undefined, reported as 0.
    assert compute_metrics("cola", [1, 1, 1], [1, 0, 1])["matthews_correlation"] == 0.0


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli", "mnli"])
def test_accuracy_tasks(task):
    assert compute_metrics(task, [1, 0, 1, 1], [1, 0, 0, 1]) == {"accuracy": 0.75}


def test_mnli_from_logits():
    logits = np.array([[3.0, 0.1, 0.2], [0.0, 2.0, 1.0], [0.0, 0.0, 9.0]])
    assert compute_metrics("mnli", logits, [0, 2, 2]) == {"accuracy": pytest.approx(2 / 3)}


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_accuracy(task):
    # TP=3 FN=1 FP=1 TN=1: precision = recall = 3/4, so F1 = 3/4; accuracy 4/6.
    result = compute_metrics(task, [1, 1, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0])
    assert result == pytest.approx({"accuracy": 2 / 3, "f1": 0.75, "combined": (2 / 3 + 0.75) / 2})
    assert compute_metrics(task, [0, 0], [0, 0])["f1"] == 0.0  # no positives anywhere


def test_stsb_pearson_spearman():
    # Deviations from the means: x = (-3, -2, -1, 6), y = (-1.5, -0.5, 0.5, 1.5);
    # Σxy = 14, Σx² = 50, Σy² = 5, so r = 14 / sqrt(250). The ranks agree exactly: ρ = 1.
    result = compute_metrics("stsb", [1.0, 2.0, 3.0, 10.0], [1.0, 2.0, 3.0, 4.0])
    pearson = 14 / math.sqrt(250)
    assert result == pytest.approx({"pearson": pearson, "spearmanr": 1.0, "combined": (pearson + 1) / 2})
    # A [n, 1] regression head output is accepted as it is.
    column = compute_metrics("sts-b", np.array([[1.0], [2.0], [3.0], [10.0]]), [1.0, 2.0, 3.0, 4.0])
    assert column == pytest.approx(result)
    assert compute_metrics("stsb", [2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"] == 0.0


def test_generic_classification():
    # Per class: 0 -> P 1/2, R 1/2, F1 1/2; 1 -> P 2/3, R 1, F1 4/5; 2 -> P 1, R 1/2, F1 2/3.
    result = compute_generic_metrics([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2], is_regression=False)
    assert result == pytest.approx({"accuracy": 4 / 6, "macro_f1": (1 / 2 + 4 / 5 + 2 / 3) / 3})


def test_generic_regression():
    # y = (1, 3, 2, 4) against x = (1, 2, 3, 4): Σxy = 4, Σx² = Σy² = 5, so r = ρ = 0.8; MSE = 2/4.
    result = compute_generic_metrics([1.0, 3.0, 2.0, 4.0], [1.0, 2.0, 3.0, 4.0], is_regression=True)
    assert result == pytest.approx({"pearson": 0.8, "spearmanr": 0.8, "mse": 0.5})


def test_main_metric():
    assert {task: main_metric(task) for task in ["cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte",
                                                  "wnli"]} == {
        "cola": "matthews_correlation", "sst2": "accuracy", "mrpc": "combined", "stsb": "combined",
        "qqp": "combined", "mnli": "accuracy", "qnli": "accuracy", "rte": "accuracy", "wnli": "accuracy",
    }
    for task in ["cola", "mrpc", "stsb", "mnli"]:  # the key is among what compute_metrics returns
        assert main_metric(task) in compute_metrics(task, [0, 1, 1], [0, 1, 0])


def test_errors():
    with pytest.raises(InputError, match="3 predictions but 2 labels"):
        compute_metrics("sst2", [0, 1, 1], [0, 1])
    with pytest.raises(InputError, match="no predictions"):
        compute_generic_metrics([], [], is_regression=False)
    with pytest.raises(DataError, match="unknown GLUE task 'imdb'"):
        compute_metrics("imdb", [0], [0])
