"""GLUE readers (original TSV layout, hub), user files, and submission files."""

import json
import sys
import types
from collections import Counter

import numpy as np
import pytest

from bigs.data.glue import (
    GLUE_TASKS, get_task, load_glue_hub, load_glue_tsv, load_user_files, submission_filename, write_submission,
)
from bigs.errors import DataError

# Official GLUE sizes.
COUNTS = {
    "cola": {"train": 8551, "validation": 1043, "test": 1063},
    "sst2": {"train": 67349, "validation": 872, "test": 1821},
    "mrpc": {"train": 3668, "validation": 408, "test": 1725},
    "stsb": {"train": 5749, "validation": 1500, "test": 1379},
    "rte": {"train": 2490, "validation": 277, "test": 3000},
    "wnli": {"train": 635, "validation": 71, "test": 146},
    "qnli": {"validation": 5463, "test": 5463},
}

# Known label balances (shared/data/SOURCES.md, note G): {label string: count}.
BALANCES = {
    ("cola", "train"): {"1": 6023, "0": 2528},
    ("sst2", "train"): {"1": 37569, "0": 29780},
    ("mrpc", "train"): {"1": 2474, "0": 1194},
    ("rte", "train"): {"entailment": 1249, "not_entailment": 1241},
    ("qnli", "validation"): {"entailment": 2702, "not_entailment": 2761},
    ("wnli", "train"): {"0": 323, "1": 312},
}


@pytest.fixture(scope="module")
def glue_dir(shared_dir):
    path = shared_dir / "data" / "glue"
    if not path.is_dir():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="module")
def glue(glue_dir):
    """Every staged task, read once."""
    return {task: load_glue_tsv(task, str(glue_dir)) for task in COUNTS}


@pytest.mark.parametrize("task", sorted(COUNTS))
def test_counts(glue, task):
    splits = glue[task]
    assert {split: len(examples) for split, examples in splits.items()} == COUNTS[task]
    spec = get_task(task)
    for split, examples in splits.items():
        assert (examples.text_b is None) == (len(spec.text_columns) == 1)
        if examples.text_b is not None:
            assert len(examples.text_b) == len(examples)
        assert len(examples.ids) == len(examples)
        assert all(text.strip() for text in examples.text_a)
        if split == "test":
            assert examples.labels is None
            assert examples.ids == list(range(len(examples)))  # the files' index column
        else:
            assert len(examples.labels) == len(examples)


@pytest.mark.parametrize("task, split", sorted(BALANCES))
def test_label_balance(glue, task, split):
    labels = get_task(task).labels
    counts = Counter(labels[i] for i in glue[task][split].labels)
    assert counts == BALANCES[(task, split)]


def test_file_quirks(glue):
    # CoLA: headerless train/dev (the first sentence is data), dev has no final newline.
    assert glue["cola"]["train"].text_a[0] == "Our friends won't buy this analysis, let alone the next one we propose."
    assert glue["cola"]["validation"].labels.dtype == np.int32
    # MRPC: the BOM before "Quality" is dropped, so the label column is found.
    mrpc = glue["mrpc"]["train"]
    assert mrpc.labels[:2].tolist() == [1, 0] and mrpc.text_a[0].startswith("Amrozi accused")
    # QUOTE_NONE: unbalanced quotes stay in the text.
    assert glue["mrpc"]["validation"].text_b[0].startswith('"The foodservice pie')
    assert sum(text.startswith('"') for text in glue["qnli"]["validation"].text_b) >= 5
    # STS-B: float32 scores in [0, 5] from the last column.
    scores = glue["stsb"]["train"].labels
    assert scores.dtype == np.float32 and scores.min() == 0.0 and scores.max() == 5.0
    np.testing.assert_allclose(scores[:2], [5.0, 3.8])


def test_task_names_and_folders(glue_dir):
    assert get_task("SST-2") is get_task("sst2") is GLUE_TASKS["sst2"]
    assert get_task("sts-b").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").eval_splits == ("validation_matched", "validation_mismatched")
    with pytest.raises(DataError, match="unknown GLUE task 'squad'"):
        get_task("squad")
    # The task folder itself works as data_dir, and splits can be chosen.
    only_dev = load_glue_tsv("rte", str(glue_dir / "RTE"), splits=["validation"])
    assert list(only_dev) == ["validation"] and len(only_dev["validation"]) == 277


def test_missing_files(glue_dir, tmp_path):
    with pytest.raises(DataError, match=r"QNLI.train\.tsv' does not exist"):
        load_glue_tsv("qnli", str(glue_dir), splits=["train"])
    with pytest.raises(DataError, match="found no qqp files"):
        load_glue_tsv("qqp", str(tmp_path))
    with pytest.raises(DataError, match="no split"):
        load_glue_tsv("rte", str(glue_dir), splits=["validation_matched"])


def _write(path, lines, final_newline=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if final_newline else ""), encoding="utf-8")


MNLI_HEAD = "index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\t" \
            "sentence1_parse\tsentence2_parse\tsentence1\tsentence2"


def _mnli_row(index, premise, hypothesis, *labels):
    parses = "\t".join(["( x )"] * 4)
    return "\t".join([str(index), "1", f"{index}e", "fiction", parses, premise, hypothesis, *labels])


def test_mnli_layout(tmp_path):
    root = tmp_path / "glue_data" / "MNLI"
    _write(root / "train.tsv", [MNLI_HEAD + "\tlabel1\tgold_label",
                                _mnli_row(0, "A man sleeps.", "A man rests.", "entailment", "entailment"),
                                _mnli_row(1, 'He said "no.', "He agreed.", "contradiction", "contradiction")])
    dev_head = MNLI_HEAD + "\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label"
    for name in ("dev_matched", "dev_mismatched"):
        _write(root / f"{name}.tsv", [dev_head, _mnli_row(7, "P.", "H.", "neutral", "neutral", "neutral",
                                                          "contradiction", "neutral", "neutral")], final_newline=False)
    for name in ("test_matched", "test_mismatched"):
        _write(root / f"{name}.tsv", [MNLI_HEAD, _mnli_row(0, "P0.", "H0."), _mnli_row(1, "P1.", "H1.")])

    splits = load_glue_tsv("mnli", str(tmp_path / "glue_data"))
    assert sorted(splits) == ["test_matched", "test_mismatched", "train", "validation_matched",
                              "validation_mismatched"]
    train = splits["train"]
    assert train.text_a == ["A man sleeps.", 'He said "no.'] and train.text_b == ["A man rests.", "He agreed."]
    labels = get_task("mnli").labels
    assert [labels[i] for i in train.labels] == ["entailment", "contradiction"]
    assert labels == ("entailment", "neutral", "contradiction")  # the order the published MNLI heads use
    assert splits["validation_mismatched"].labels.tolist() == [1] and splits["validation_matched"].ids == [7]
    assert splits["test_matched"].labels is None and splits["test_matched"].text_b == ["H0.", "H1."]


def test_qqp_layout(tmp_path):
    folder = tmp_path / "QQP"
    head = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"
    _write(folder / "train.tsv", [head, "201359\t303345\t303346\tWhy are African-Americans so beautiful?\t"
                                        "Why are hispanics so beautiful?\t0",
                                  "263843\t69383\t380476\tI want to pursue PhD?\tHow can I do a PhD?\t1"])
    _write(folder / "dev.tsv", [head, "5\t1\t2\tq1?\tq2?\t1"], final_newline=False)
    _write(folder / "test.tsv", ["id\tquestion1\tquestion2", "0\tWhat?\tWhy?", "1\tHow?\tWhen?"])
    splits = load_glue_tsv("qqp", str(tmp_path))
    assert splits["train"].labels.tolist() == [0, 1] and splits["train"].ids == [201359, 263843]
    assert splits["train"].text_b[1] == "How can I do a PhD?"
    assert splits["validation"].labels.tolist() == [1]
    assert splits["test"].ids == [0, 1] and splits["test"].text_a == ["What?", "How?"]


def test_malformed_files(tmp_path):
    folder = tmp_path / "RTE"
    _write(folder / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tentailment", "1\ta\tb"])
    with pytest.raises(DataError, match=r"dev\.tsv: row 3 has 3 tab-separated fields; expected 4"):
        load_glue_tsv("rte", str(tmp_path), splits=["validation"])
    _write(folder / "dev.tsv", ["index\tsentence1\tsentence2\tlabel", "0\ta\tb\tmaybe"])
    with pytest.raises(DataError, match=r"labels \['maybe'\] not among the expected \['entailment'"):
        load_glue_tsv("rte", str(tmp_path), splits=["validation"])
    _write(folder / "dev.tsv", ["index\tsentence1\tsentence2\tgold", "0\ta\tb\tentailment"])
    with pytest.raises(DataError, match=r"no column 'label'; columns present: \['index', 'sentence1'"):
        load_glue_tsv("rte", str(tmp_path), splits=["validation"])


class _FakeSplit:
    """The parts of a `datasets.Dataset` that load_glue_hub reads."""

    def __init__(self, columns, label_names):
        self._columns = columns
        self.column_names = list(columns)
        self.features = {"label": types.SimpleNamespace(names=label_names)}

    def __getitem__(self, name):
        return self._columns[name]


def test_hub_mapping(monkeypatch):
    nli = ["entailment", "neutral", "contradiction"]
    fake = {
        ("nyu-mll/glue", "mnli"): {
            "train": _FakeSplit({"premise": ["p"] * 3, "hypothesis": ["h"] * 3, "label": [0, 1, 2],
                                 "idx": [0, 1, 2]}, nli),
            "test_matched": _FakeSplit({"premise": ["p"], "hypothesis": ["h"], "label": [-1], "idx": [9]}, nli),
        },
        ("nyu-mll/glue", "mrpc"): {
            "validation": _FakeSplit({"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0],
                                      "idx": [0, 1]}, ["not_equivalent", "equivalent"]),
        },
    }
    module = types.ModuleType("datasets")
    module.load_dataset = lambda repository, config, cache_dir=None: fake[(repository, config)]
    monkeypatch.setitem(sys.modules, "datasets", module)

    mnli = load_glue_hub("mnli")
    assert mnli["train"].labels.tolist() == [0, 1, 2] and mnli["train"].text_b == ["h"] * 3
    assert mnli["test_matched"].labels is None and mnli["test_matched"].ids == [9]
    mrpc = load_glue_hub("MRPC")
    assert mrpc["validation"].labels.tolist() == [1, 0] and mrpc["validation"].text_b == ["c", "d"]
    with pytest.raises(DataError, match="could not load GLUE 'rte' from the hub"):
        load_glue_hub("rte")


def test_hub_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import fails
    with pytest.raises(DataError, match=r"pip install 'bigs\[hub\]'"):
        load_glue_hub("sst2")


# ------------------------------------------------------------------------------- user files


def test_user_csv_pairs(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('id,sentence1,sentence2,label\n1,"Hi, there",Bye,2\n2,A,B,10\n3,C,D,2\n')
    validation = tmp_path / "dev.csv"
    validation.write_text("sentence1,sentence2,label\nE,F,10.0\n")
    test = tmp_path / "test.csv"
    test.write_text("id,sentence1,sentence2\n7,G,H\n")
    splits, spec = load_user_files(str(train), str(validation), str(test))
    assert spec.text_columns == ("sentence1", "sentence2") and spec.label_column == "label"
    assert spec.labels == ("2", "10") and not spec.is_regression and spec.metric == "accuracy"
    assert spec.eval_splits == ("validation",) and spec.test_splits == ("test",)
    assert splits["train"].text_a[0] == "Hi, there" and splits["train"].labels.tolist() == [0, 1, 0]
    assert splits["train"].ids == [1, 2, 3]
    assert splits["validation"].labels.tolist() == [1]
    assert splits["test"].labels is None and splits["test"].ids == [7]


def test_user_tsv_single_text(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text('text\tlabel\nit "works\tpositive\nno\tnegative\n')
    splits, spec = load_user_files(train_file=str(train))
    assert spec.text_columns == ("text",) and spec.labels == ("negative", "positive")
    assert splits["train"].text_a == ['it "works', "no"] and splits["train"].text_b is None
    assert splits["train"].labels.tolist() == [1, 0]


def test_user_json_regression_and_detection(tmp_path):
    records = [{"idx": 0, "premise_text": "a", "claim": "b", "score": 0.5},
               {"idx": 1, "premise_text": "c", "claim": "d", "score": 4.0}]
    as_list = tmp_path / "train.json"
    as_list.write_text(json.dumps(records))
    as_lines = tmp_path / "dev.jsonl"
    as_lines.write_text("\n".join(json.dumps(record) for record in records))
    as_columns = tmp_path / "columns.json"
    as_columns.write_text(json.dumps({key: [r[key] for r in records] for key in records[0]}))
    splits, spec = load_user_files(str(as_list), str(as_lines), str(as_columns))
    # No known names: the first two non-numeric columns are the texts.
    assert spec.text_columns == ("premise_text", "claim") and spec.label_column == "score"
    assert spec.is_regression and spec.num_labels == 1 and spec.metric == "pearson"
    for examples in splits.values():
        assert examples.labels.dtype == np.float32 and examples.labels.tolist() == [0.5, 4.0]
        assert examples.text_b == ["b", "d"] and examples.ids == [0, 1]


def test_user_named_columns(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text('{"body": "x", "title": "t", "topic": "b"}\n{"body": "y", "title": "u", "topic": "a"}\n')
    splits, spec = load_user_files(train_file=str(train), text_columns="body", label_column="topic")
    assert spec.text_columns == ("body",) and spec.labels == ("a", "b")
    assert splits["train"].labels.tolist() == [1, 0]


def test_user_file_errors(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\na,0\nb,1\n")
    with pytest.raises(DataError, match=r"train\.csv has no label column 'topic'; columns present: "
                                        r"\['sentence', 'label'\]"):
        load_user_files(str(train), label_column="topic")
    with pytest.raises(DataError, match=r"train\.csv has no text column 'body'; columns present"):
        load_user_files(str(train), text_columns=["body"])
    unlabeled = tmp_path / "unlabeled.csv"
    unlabeled.write_text("sentence,target\na,0\n")
    with pytest.raises(DataError, match=r"unlabeled\.csv has no label column \(looked for .*columns present: "
                                        r"\['sentence', 'target'\]"):
        load_user_files(str(unlabeled))
    with pytest.raises(DataError, match=r"unlabeled\.csv has no label column 'label'"):
        load_user_files(str(train), validation_file=str(unlabeled))
    new_label = tmp_path / "dev.csv"
    new_label.write_text("sentence,label\nc,2\n")
    with pytest.raises(DataError, match=r"dev\.csv has labels \['2'\] not among the expected \['0', '1'\]"):
        load_user_files(str(train), str(new_label))
    with pytest.raises(DataError, match="does not exist"):
        load_user_files(str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="is a folder; expected a .csv, .tsv, .json or .jsonl file"):
        load_user_files(str(tmp_path))
    with pytest.raises(DataError, match=r"extension '\.txt'"):
        (tmp_path / "a.txt").write_text("x")
        load_user_files(str(tmp_path / "a.txt"))


# ------------------------------------------------------------------------------- submission


def test_write_submission(tmp_path):
    path = tmp_path / "out" / submission_filename("mnli", "test_mismatched")
    write_submission(str(path), "mnli", np.array([2, 0, 1]), [0, 1, 2])
    assert path.name == "MNLI-mm.tsv"
    assert path.read_text() == "index\tprediction\n0\tcontradiction\n1\tentailment\n2\tneutral\n"
    write_submission(str(tmp_path / "STS-B.tsv"), "stsb", [4.12345, 0.0], [5, 6])
    assert (tmp_path / "STS-B.tsv").read_text() == "index\tprediction\n5\t4.123\n6\t0.000\n"
    assert submission_filename("sst-2") == "SST-2.tsv" and submission_filename("cola") == "CoLA.tsv"
    with pytest.raises(DataError, match="prediction 2 for cola is not a label id"):
        write_submission(str(tmp_path / "CoLA.tsv"), "cola", [2], [0])
    with pytest.raises(DataError, match="2 predictions but 1 ids"):
        write_submission(str(tmp_path / "CoLA.tsv"), "cola", [0, 1], [0])


# ------------------------------------------------------------------------------- non-finite labels (case C04)

C04 = [("cls_nan.csv", "row 4", "'nan'"), ("reg_nan.csv", "row 4", "'nan'"), ("reg_inf.csv", "row 4", "'inf'"),
       ("cls_empty.csv", "row 4", "empty"), ("cls_null.jsonl", "row 3", "empty")]


@pytest.mark.parametrize("name, row, value", C04)
def test_a_label_that_is_not_a_finite_number_is_refused_naming_file_row_and_value(shared_dir, name, row, value):
    path = str(shared_dir / "cases" / "C04" / name)
    with pytest.raises(DataError) as error:
        load_user_files(path, path)
    assert f"{path}: {row}: " in str(error.value) and value in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("sentence,score\na,0.5\nb,NaN\n", r"row 3: label 'NaN' is not a finite number"),
    ("sentence,score\na,0.5\nb,-Infinity\n", r"row 3: label '-Infinity' is not a finite number"),
    ('sentence,score\n"two\nlines",0.5\nb,\n', r"row 4: the label is empty"),
])
def test_non_finite_or_empty_targets_in_user_files(tmp_path, text, message):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_user_files(str(path))


def test_json_records_name_the_record(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps([{"text": "a", "label": 0.5}, {"text": "b", "label": float("nan")}]))
    with pytest.raises(DataError, match=r"train\.json: record 2: label nan is not a finite number"):
        load_user_files(str(path))


def test_glue_regression_targets_must_be_finite(tmp_path):
    _write(tmp_path / "STS-B" / "train.tsv", ["index\tsentence1\tsentence2\tscore", "0\ta\tb\t1.5", "1\ta\tb\tnan"])
    with pytest.raises(DataError, match=r"train\.tsv: row 3: label 'nan' is not a finite number"):
        load_glue_tsv("stsb", str(tmp_path), splits=["train"])


def test_a_test_file_with_an_empty_label_column_is_unlabelled(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("sentence,label\na,0\nb,1\n")
    test.write_text("sentence,label\nc,\nd,\n")
    data, _ = load_user_files(str(train), test_file=str(test))
    assert data["test"].labels is None and data["test"].text_a == ["c", "d"]


def test_windows_1252_data_file_keeps_its_quotes(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes("sentence,label\nthe river\u2019s bank,1\nplain,0\n".encode("cp1252"))
    with pytest.warns(UnicodeWarning, match="train.csv"):
        data, _ = load_user_files(str(path))
    assert data["train"].text_a[0] == "the river\u2019s bank"


@pytest.mark.parametrize("name, text, message", [
    ("train.csv", "sentence,label\ngood,1\ngreat, really great,1\n",
     r"train\.csv: row 3 has 3 comma-separated \(quote a text holding a comma\) fields; expected 2 \(sentence, label\)"),
    ("train.tsv", "sentence\tlabel\ngood\t1\nextra\tfield\t1\n", r"train\.tsv: row 3 has 3 tab-separated fields"),
    ("train.tsv", "sentence\tlabel\ngood\t1\nshort\n", r"train\.tsv: row 3 has 1 tab-separated fields; expected 2"),
    ("train.jsonl", '{"sentence": "a", "label": 1}\n\n{"sentence": "b", "label": 0\n', r"train\.jsonl: row 3 is not JSON"),
    ("train.jsonl", '{"sentence": "a", "label": 1}\n{"label": 0}\n', r"train\.jsonl: row 2 has no 'sentence'"),
])
def test_a_row_that_does_not_fit_the_header_is_refused(tmp_path, name, text, message):
    """Not a new class made of a shifted text, nor an empty text: the file, the row, what is wrong."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_user_files(str(path), text_columns=["sentence"])


def test_a_one_class_training_file_is_refused_not_turned_into_regression(tmp_path):
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    train.write_text("sentence,label\na,positive\nb,positive\n")
    with pytest.raises(DataError, match=r"train\.csv: every training label is 'positive'; a classifier needs at "
                                        r"least two classes"):
        load_user_files(str(train))
    train.write_text("sentence,label\na,1\nb,1\n")
    with pytest.raises(DataError, match="every training label is '1'"):
        load_user_files(str(train))
    dev.write_text("sentence,label\nc,1\nd,1\n")            # one class in an evaluation file alone is fine
    train.write_text("sentence,label\na,0\nb,1\n")
    data, spec = load_user_files(str(train), str(dev))
    assert spec.labels == ("0", "1") and data["validation"].labels.tolist() == [1, 1]
