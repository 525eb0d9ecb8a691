"""GLUE and user classification data: read, label, and write submissions.

Three sources give the same `Examples`:

- `load_glue_tsv`: the original GLUE distribution (`glue_data/<Task>/{train,dev,test}.tsv`,
  as written by the GLUE download script), read with `csv.QUOTE_NONE` because QNLI, RTE
  and MNLI contain unbalanced quotes.
- `load_glue_hub`: the `nyu-mll/glue` dataset through the optional `datasets` library.
- `load_user_files`: the user's own CSV, TSV or JSON/JSONL files.

Label ids are indexes into `TaskSpec.labels`. For MNLI the order is the Hugging Face one
(entailment, neutral, contradiction): the original BiGS `run_glue.py` took its labels from
the `datasets` features, so the published `BiGS_*_MNLI` heads predict in that order.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError
from ..files import require_file, write_text
from .text import read_text

# Splits are named as in `datasets`; a GLUE file is the split name with "validation" -> "dev".
TRAIN, VALIDATION, TEST = "train", "validation", "test"

# CoLA train/dev have no header; these are the GLUE columns in order.
_COLA_HEADERLESS_COLUMNS = ("source", "label", "original_label", "sentence")

# Candidate columns for user files, in order of preference.
_TEXT_PAIRS = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("premise", "hypothesis"),
    ("text_a", "text_b"),
)
_TEXT_SINGLES = ("sentence", "text")
_LABEL_COLUMNS = ("label", "labels", "score")
_ID_COLUMNS = ("idx", "id", "index")


@dataclass(frozen=True)
class TaskSpec:
    """What a sentence(-pair) classification or regression task looks like."""

    # canonical name, e.g. "sst2", or "custom" for user files
    name: str
    # one or two text columns (GLUE: the TSV header names)
    text_columns: tuple[str, ...]
    # label strings, index = label id; empty for regression
    labels: tuple[str, ...]
    # one float target (STS-B) instead of classes
    is_regression: bool
    # evaluation splits; MNLI has two
    eval_splits: tuple[str, ...]
    # test splits (no labels), predicted for the submission file
    test_splits: tuple[str, ...]
    # metric key (from bigs.metrics) that selects the best checkpoint
    metric: str
    # column holding the label, and the example id, in the files
    label_column: str | None = None
    id_column: str | None = None
    # GLUE directory name under glue_data/, e.g. "SST-2"
    folder: str | None = None
    # text columns in the `nyu-mll/glue` dataset
    hub_text_columns: tuple[str, ...] = ()

    @property
    def num_labels(self) -> int:
        """Outputs of the classifier head: 1 for regression."""
        return 1 if self.is_regression else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        """Every split of the task: train, then the eval splits, then the test splits."""
        return (TRAIN, *self.eval_splits, *self.test_splits)


def _glue(name, folder, text_columns, labels, metric, label_column="label", id_column="index",
          hub_text_columns=None, eval_splits=(VALIDATION,), test_splits=(TEST,)) -> TaskSpec:
    """A registry entry; GLUE files mostly label in "label", index in "index", one dev and test file."""
    return TaskSpec(
        name=name, text_columns=text_columns, labels=labels, is_regression=not labels,
        eval_splits=eval_splits, test_splits=test_splits, metric=metric,
        label_column=label_column, id_column=id_column, folder=folder,
        hub_text_columns=hub_text_columns or text_columns,
    )


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")

GLUE_TASKS: dict[str, TaskSpec] = {
    "cola": _glue("cola", "CoLA", ("sentence",), _BINARY, "matthews_correlation"),
    "sst2": _glue("sst2", "SST-2", ("sentence",), _BINARY, "accuracy"),
    "mrpc": _glue("mrpc", "MRPC", ("#1 String", "#2 String"), _BINARY, "combined",
                  label_column="Quality", hub_text_columns=("sentence1", "sentence2")),
    "stsb": _glue("stsb", "STS-B", ("sentence1", "sentence2"), (), "combined", label_column="score"),
    "qqp": _glue("qqp", "QQP", ("question1", "question2"), _BINARY, "combined",
                 label_column="is_duplicate", id_column="id"),
    "mnli": _glue("mnli", "MNLI", ("sentence1", "sentence2"), ("entailment", "neutral", "contradiction"),
                  "accuracy", label_column="gold_label", hub_text_columns=("premise", "hypothesis"),
                  eval_splits=("validation_matched", "validation_mismatched"),
                  test_splits=("test_matched", "test_mismatched")),
    "qnli": _glue("qnli", "QNLI", ("question", "sentence"), _NLI2, "accuracy"),
    "rte": _glue("rte", "RTE", ("sentence1", "sentence2"), _NLI2, "accuracy"),
    "wnli": _glue("wnli", "WNLI", ("sentence1", "sentence2"), _BINARY, "accuracy"),
}

# File names the GLUE server expects in the submission zip, by (task, test split).
_SUBMISSION_FILES = {
    ("mnli", "test_matched"): "MNLI-m.tsv",
    ("mnli", "test_mismatched"): "MNLI-mm.tsv",
}


def get_task(name: str) -> TaskSpec:
    """The GLUE task `name`; case, "-" and "_" are ignored ("SST-2", "sts-b" work)."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise DataError(f"unknown GLUE task {name!r}; expected one of {sorted(GLUE_TASKS)}")
    return GLUE_TASKS[key]


@dataclass
class Examples:
    """One split: texts, labels and example ids, all of the same length."""

    text_a: list[str]
    # second segment for sentence-pair tasks
    text_b: list[str] | None
    # [n] int32 label ids, float32 targets for regression, or None (test files)
    labels: np.ndarray | None
    # the file's index/id column, or row numbers when it has none
    ids: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.text_a)


# ------------------------------------------------------------------------------- GLUE TSV


def _split_file(split: str) -> str:
    """"validation_matched" -> "dev_matched.tsv"."""
    return split.replace(VALIDATION, "dev") + ".tsv"


def _read_tsv(path: str, header: Sequence[str] | None = None) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, rows and each row's line number in a GLUE TSV; `header` names the columns of a
    headerless file.

    QUOTE_NONE keeps quotes as text (QNLI, RTE and MNLI contain unbalanced ones).
    """
    reader = csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows, lines = [], []
    for row in reader:
        if row:
            rows.append(row)
            lines.append(reader.line_num)
    if header is None:
        if not rows:
            raise DataError(f"{path} is empty; expected a header line and data rows")
        header, rows, lines = rows[0], rows[1:], lines[1:]
    header = list(header)
    for line, row in zip(lines, rows):
        if len(row) != len(header):
            raise DataError(
                f"{path}: row {line} has {len(row)} tab-separated fields; "
                f"expected {len(header)} ({', '.join(header)})"
            )
    return header, rows, lines


def _column(path: str, header: list[str], name: str) -> int:
    if name not in header:
        raise DataError(f"{path} has no column {name!r}; columns present: {header}")
    return header.index(name)


def _parse_ids(values: Sequence[object]) -> list:
    """Integer ids where the column holds integers (GLUE), else the values as they are."""
    try:
        return [int(value) for value in values]
    except (TypeError, ValueError):
        return list(values)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check_label(where: str, value: object) -> None:
    """DataError unless `value` is a present label that is not a non-finite number."""
    if _is_missing(value):
        raise DataError(f"{where}: the label is empty; expected a class or a number")
    if _is_number(value) and not math.isfinite(float(value)):
        raise DataError(f"{where}: label {value!r} is not a finite number")


def _label_ids(path: str, values: Sequence[object], labels: Sequence[str], rows: Sequence[str]) -> np.ndarray:
    """[n] int32 indexes into `labels`. `rows` name each value's place ("row 4") for errors."""
    index = {label: i for i, label in enumerate(labels)}
    for where, value in zip(rows, values):
        _check_label(f"{path}: {where}", value)
    unknown = sorted({value for value in values if value not in index})
    if unknown:
        first = next(where for where, value in zip(rows, values) if value not in index)
        raise DataError(f"{path} has labels {unknown[:5]} not among the expected {list(labels)} (first at {first})")
    return np.asarray([index[value] for value in values], dtype=np.int32)


def _float_targets(path: str, values: Sequence[object], rows: Sequence[str]) -> np.ndarray:
    """[n] float32 regression targets; DataError naming the row of a missing, non-numeric
    or non-finite one."""
    for where, value in zip(rows, values):
        _check_label(f"{path}: {where}", value)
        if not _is_number(value):
            raise DataError(f"{path}: {where}: regression target {value!r} is not a number")
    return np.asarray([float(value) for value in values], dtype=np.float32)


def _read_glue_split(task: TaskSpec, path: str, split: str) -> Examples:
    headerless = task.name == "cola" and not split.startswith(TEST)
    header, rows, lines = _read_tsv(path, _COLA_HEADERLESS_COLUMNS if headerless else None)
    texts = [[row[_column(path, header, name)] for row in rows] for name in task.text_columns]
    labels = None
    if not split.startswith(TEST):
        values = [row[_column(path, header, task.label_column)] for row in rows]
        where = [f"row {line}" for line in lines]
        labels = (_float_targets(path, values, where) if task.is_regression
                  else _label_ids(path, values, task.labels, where))
    ids = list(range(len(rows)))
    if task.id_column in header:
        ids = _parse_ids([row[header.index(task.id_column)] for row in rows])
    return Examples(texts[0], texts[1] if len(texts) > 1 else None, labels, ids)


def glue_files(task: str, data_dir: str, splits: Sequence[str] | None = None) -> dict[str, str]:
    """{split: path} of a GLUE task's TSV files in `data_dir` (the `glue_data` folder holding
    `<Task>/`, or the task folder). By default every split whose file exists; DataError when
    a requested file is missing or none is found."""
    spec = get_task(task)
    folder = os.path.join(data_dir, spec.folder)
    if not os.path.isdir(folder):
        folder = data_dir
    wanted = list(spec.splits if splits is None else splits)
    unknown = [split for split in wanted if split not in spec.splits]
    if unknown:
        raise DataError(f"{spec.name} has no split {unknown}; expected some of {list(spec.splits)}")
    paths = {split: os.path.join(folder, _split_file(split)) for split in wanted}
    if splits is None:
        paths = {split: path for split, path in paths.items() if os.path.isfile(path)}
        if not paths:
            raise DataError(
                f"found no {spec.name} files in {os.path.join(data_dir, spec.folder)} or {data_dir}; "
                f"expected some of {[_split_file(split) for split in spec.splits]}"
            )
    for path in paths.values():
        require_file(path, "GLUE file", f"a file in the {spec.folder} folder of glue_data")
    return paths


def load_glue_tsv(task: str, data_dir: str, splits: Sequence[str] | None = None) -> dict[str, Examples]:
    """Reads a GLUE task from the original GLUE TSV files.

    Args:
      task: a GLUE task name ("cola", "sst2", "mnli", ...).
      data_dir: the `glue_data` folder holding `<Task>/` (e.g. `SST-2/`), or the task folder.
      splits: which splits to read ("train", "validation", "test", MNLI's
        "validation_matched", ...); by default every split whose file exists.

    Returns:
      {split: Examples}.

    Raises:
      DataError: a file is missing or malformed, or a label is empty, unknown or not a
        finite number (naming the file, the row and the value).
    """
    spec = get_task(task)
    return {split: _read_glue_split(spec, path, split) for split, path in glue_files(task, data_dir, splits).items()}


# ------------------------------------------------------------------------------- hub


def load_glue_hub(task: str, cache_dir: str | None = None) -> dict[str, Examples]:
    """Reads a GLUE task from the Hugging Face hub (`nyu-mll/glue`) with `datasets`.

    Needs the optional dependency: `pip install 'bigs[hub]'`. Test splits get labels None.
    """
    spec = get_task(task)
    try:
        import datasets
    except ImportError as error:
        raise DataError(
            f"reading GLUE {spec.name!r} from the hub needs the `datasets` library; "
            "install it with `pip install 'bigs[hub]'`, or pass a folder of GLUE TSV files"
        ) from error
    failures = []
    for repository in ("nyu-mll/glue", "glue"):
        try:
            dataset = datasets.load_dataset(repository, spec.name, cache_dir=cache_dir)
            break
        except Exception as error:  # offline, renamed repository, old `datasets`: try the next
            failures.append(f"{repository}: {type(error).__name__}: {error}")
    else:
        raise DataError(
            f"could not load GLUE {spec.name!r} from the hub ({'; '.join(failures)}); "
            "expected network access or a local cache, or pass a folder of GLUE TSV files"
        )
    return {split: _hub_examples(spec, dataset[split], f"{repository}/{spec.name}[{split}]")
            for split in spec.splits if split in dataset}


def _hub_examples(spec: TaskSpec, rows, source: str) -> Examples:
    """One `datasets` split -> Examples; label ids are mapped by name where the hub has our names."""
    texts = [list(rows[name]) for name in spec.hub_text_columns]
    raw = np.asarray(rows["label"])
    labels = None
    if raw.size and not np.all(raw == -1):  # -1: the hub's "no label" on test splits
        where = [f"row {i}" for i in range(len(raw))]
        if spec.is_regression:
            labels = _float_targets(source, raw.tolist(), where)
        else:
            hub_names = list(rows.features["label"].names)
            if set(hub_names) == set(spec.labels):
                labels = _label_ids(source, [hub_names[i] for i in raw], spec.labels, where)
            else:  # binary tasks: hub names ("not_equivalent", ...) but the same 0/1 ids
                labels = raw.astype(np.int32)
    ids = list(rows["idx"]) if "idx" in rows.column_names else list(range(len(texts[0])))
    return Examples(texts[0], texts[1] if len(texts) > 1 else None, labels, ids)


# ------------------------------------------------------------------------------- user files


def _read_records(path: str) -> tuple[list[str], list[dict], list[str]]:
    """Columns, rows and each row's place ("row 4": its line, the header being row 1; "record
    3" in a JSON list) of a CSV, TSV, JSON (list of records, or columns) or JSON Lines file.

    Raises DataError naming the row of a CSV/TSV row with more or fewer fields than the
    header (an unquoted comma would otherwise shift a text into the label), or of a JSON
    Lines line that is not JSON."""
    require_file(path, "data file", "a .csv, .tsv, .json or .jsonl file")
    extension = os.path.splitext(path)[1].lower()
    if extension not in (".csv", ".tsv", ".json", ".jsonl"):
        raise DataError(f"data file {path} has extension {extension!r}; expected .csv, .tsv, .json or .jsonl")
    text = read_text(path)
    if extension in (".csv", ".tsv"):
        options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if extension == ".tsv" else {}
        reader = csv.reader(io.StringIO(text, newline=""), **options)
        columns, records, rows, line = None, [], [], 0
        for fields in reader:
            start, line = line + 1, reader.line_num
            if not fields:
                continue                            # a blank line
            if columns is None:
                columns = fields
                continue
            if len(fields) != len(columns):
                separator = "tab-separated" if extension == ".tsv" else "comma-separated (quote a text holding a comma)"
                raise DataError(f"{path}: row {start} has {len(fields)} {separator} fields; expected "
                                f"{len(columns)} ({', '.join(columns)})")
            records.append(dict(zip(columns, fields)))
            rows.append(f"row {start}")
        columns = columns or []
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
            data = [dict(zip(data, values)) for values in zip(*data.values())]  # {column: [values]}
        if isinstance(data, list):
            rows = [f"record {i + 1}" for i in range(len(data))]
        else:
            data, rows = [], []
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    data.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}: row {n} is not JSON ({error.msg} at column {error.colno}); expected "
                                    "a JSON list of records, or JSON Lines with one object per line") from None
                rows.append(f"row {n}")
        for where, record in zip(rows, data):
            if not isinstance(record, dict):
                raise DataError(f"{path}: {where} is {type(record).__name__}; expected a JSON object of column: value")
        records = data
        columns = list(dict.fromkeys(key for record in records for key in record))
    if not records:
        raise DataError(f"data file {path} has no rows")
    return columns, records, rows


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def _detect_text_columns(path: str, columns: list[str], records: list[dict], label_column: str | None):
    for pair in _TEXT_PAIRS:
        if all(name in columns for name in pair):
            return pair
    for single in _TEXT_SINGLES:
        if single in columns:
            return (single,)
    skip = {label_column, *_ID_COLUMNS}
    texts = [name for name in columns
             if name not in skip and not all(_is_number(record.get(name)) for record in records[:100])]
    if not texts:
        raise DataError(f"{path} has no text column among {columns}; name it with text_columns (--text_columns)")
    return tuple(texts[:2])


def _text(path: str, where: str, record: dict, column: str) -> str:
    """A record's text in `column`; DataError when the record lacks it (a JSON record without
    the key, or null), which would otherwise train on an empty text."""
    value = record.get(column)
    if value is None:
        raise DataError(f"{path}: {where} has no {column!r}; expected a text in every row")
    return str(value)


def _label_key(value: object) -> str:
    """Canonical label string: 1, 1.0 and "1" are the same class."""
    if _is_number(value) and float(value) == int(float(value)):
        return str(int(float(value)))
    return str(value)


def _check_columns(path: str, columns: list[str], wanted: Sequence[str], what: str) -> None:
    missing = [name for name in wanted if name not in columns]
    if missing:
        raise DataError(f"{path} has no {what} column {missing[0]!r}; columns present: {columns}")


def load_user_files(
    train_file: str | None = None,
    validation_file: str | None = None,
    test_file: str | None = None,
    text_columns: str | Sequence[str] | None = None,
    label_column: str | None = None,
) -> tuple[dict[str, Examples], TaskSpec]:
    """Reads the user's CSV/TSV/JSON/JSONL files for sequence classification or regression.

    Columns are detected unless named: text from "sentence1"+"sentence2",
    "question"+"sentence", ..., "sentence" or "text", else the first one or two non-numeric
    columns; the label from "label", "labels" or "score". Labels are a regression target
    when they are numbers that are not all whole; otherwise classes, sorted (numerically
    when they are whole numbers). Test files need no label column.

    Returns:
      ({split: Examples}, TaskSpec named "custom" with the detected columns and labels).

    Raises:
      DataError: a file is missing or malformed, lacks a column, or a label is empty, not a
        finite number ("nan", "inf") or unknown to the training file; the message names the
        file, the row and the value.
    """
    files = {split: path for split, path in
             ((TRAIN, train_file), (VALIDATION, validation_file), (TEST, test_file)) if path is not None}
    if not files:
        raise DataError("no data file given; expected at least one of train_file, validation_file, test_file")
    tables = {split: _read_records(path) for split, path in files.items()}

    first_split = next(iter(files))
    first_path, (first_columns, first_records, _) = files[first_split], tables[first_split]
    if label_column is None:
        label_column = next((name for name in _LABEL_COLUMNS if name in first_columns), None)
        if label_column is None and first_split != TEST:
            raise DataError(
                f"{first_path} has no label column (looked for {list(_LABEL_COLUMNS)}); "
                f"columns present: {first_columns}; name it with label_column (--label_column)"
            )
    if text_columns is None:
        text_columns = _detect_text_columns(first_path, first_columns, first_records, label_column)
    text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
    if not 1 <= len(text_columns) <= 2:
        raise DataError(f"text_columns={list(text_columns)}; expected one or two column names")

    labeled = [split for split in files if split != TEST or label_column in tables[split][0]]
    raw_labels, label_rows = {}, {}
    for split in files:
        columns, records, rows = tables[split]
        _check_columns(files[split], columns, text_columns, "text")
        if split in labeled:
            _check_columns(files[split], columns, [label_column], "label")
            values = [record.get(label_column) for record in records]
            if split == TEST and all(_is_missing(value) for value in values):
                continue  # a test file's empty placeholder column: no labels
            for where, value in zip(rows, values):
                _check_label(f"{files[split]}: {where}", value)
            raw_labels[split], label_rows[split] = values, rows

    reference = raw_labels.get(TRAIN) or next(iter(raw_labels.values()), [])
    is_regression = bool(reference) and all(_is_number(v) for v in reference) and any(
        float(v) != int(float(v)) for v in reference)
    labels: tuple[str, ...] = ()
    if not is_regression:
        keys = {_label_key(value) for value in reference}
        whole = all(_is_number(key) for key in keys)
        labels = tuple(sorted(keys, key=(lambda key: int(key)) if whole else None))
        if TRAIN in raw_labels and len(labels) == 1:
            raise DataError(f"{files[TRAIN]}: every training label is {labels[0]!r}; a classifier needs at least "
                            "two classes (a regression target needs numbers with a fractional part)")

    examples = {}
    for split, path in files.items():
        columns, records, rows = tables[split]
        targets = None
        if split in raw_labels:
            if is_regression:
                targets = _float_targets(path, raw_labels[split], label_rows[split])
            else:
                targets = _label_ids(path, [_label_key(value) for value in raw_labels[split]], labels,
                                     label_rows[split])
        id_column = next((name for name in _ID_COLUMNS if name in columns), None)
        ids = _parse_ids([r.get(id_column) for r in records]) if id_column else list(range(len(records)))
        texts = [[_text(path, where, record, name) for record, where in zip(records, rows)] for name in text_columns]
        examples[split] = Examples(texts[0], texts[1] if len(texts) > 1 else None, targets, ids)

    spec = TaskSpec(
        name="custom", text_columns=text_columns, labels=labels, is_regression=is_regression,
        eval_splits=(VALIDATION,) if validation_file else (), test_splits=(TEST,) if test_file else (),
        metric="pearson" if is_regression else "accuracy", label_column=label_column,
        id_column=next((name for name in _ID_COLUMNS if name in first_columns), None),
    )
    return examples, spec


# ------------------------------------------------------------------------------- submission


def submission_filename(task: str, split: str = TEST) -> str:
    """Name the GLUE server expects for a task's predictions: "CoLA.tsv", "MNLI-m.tsv", ..."""
    spec = get_task(task)
    return _SUBMISSION_FILES.get((spec.name, split), f"{spec.folder}.tsv")


def write_submission(path: str, task: str, predictions: Sequence | np.ndarray, ids: Sequence) -> None:
    """Writes GLUE predictions as `index<TAB>prediction` lines under that header, atomically.

    `predictions` are label ids (written as the task's label strings, e.g. "entailment")
    or, for STS-B, floats written with three decimals.
    """
    spec = get_task(task)
    write_predictions(path, predictions, ids, spec.labels, spec.name)


def write_predictions(path: str, predictions: Sequence | np.ndarray, ids: Sequence, labels: Sequence[str],
                      task: str = "custom") -> None:
    """`index<TAB>prediction` lines under that header, atomically: label ids written as
    `labels[id]`, or with `labels` empty (regression) floats with three decimals."""
    predictions = np.asarray(predictions)
    if len(predictions) != len(ids):
        raise DataError(f"{len(predictions)} predictions but {len(ids)} ids for {path}; expected one id each")
    if not labels:
        values = [f"{float(value):.3f}" for value in predictions]
    else:
        bad = [int(p) for p in predictions if not 0 <= int(p) < len(labels)]
        if bad:
            raise DataError(f"prediction {bad[0]} for {task} is not a label id; expected 0..{len(labels) - 1}")
        values = [labels[int(p)] for p in predictions]
    write_text(path, "index\tprediction\n" + "".join(f"{index}\t{value}\n" for index, value in zip(ids, values)))
