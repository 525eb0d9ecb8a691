"""experiments/equal_budget.py at its tiny budget: every stage runs, resumes, and reports the
numbers its stages produced; the two models really get the same pretraining."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("equal_budget", ROOT / "experiments" / "equal_budget.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["equal_budget"] = module                # dataclasses look their module up there
    spec.loader.exec_module(module)
    if not (module.SHARED / "data" / "glue").is_dir():
        pytest.skip(f"{module.SHARED / 'data'} is absent (shared data lives in ../shared beside the project root)")
    return module


@pytest.fixture(scope="module")
def finished(study, tmp_path_factory, compilation_cache):
    out = tmp_path_factory.mktemp("study")
    return out, study.run_study(out, study.BUDGETS["tiny"])


def records(folder: Path, kind: str) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_every_stage_writes_its_result(study, finished):
    out, results = finished
    budget = study.BUDGETS["tiny"]
    for name in ("results.json", "table.md", "curves_tokens.png", "curves_seconds.png", "glue.png", "kernels.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text())["table"] == results["table"]
    assert set(results["finetune"]) == set(study.MODELS)
    for model in study.MODELS:
        assert set(results["finetune"][model]) == set(budget.tasks)
    table = (out / "table.md").read_text().splitlines()
    assert len(table) == 2 + len(study.MODELS)
    # a cell and the average are the runs' own numbers
    rte = [results["finetune"]["bigs"]["rte"][str(s)]["best"] for s in budget.seeds_small_tasks]
    row = next(line for line in table if line.startswith("| BiGS pretrained"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    columns = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert cells[columns.index(next(c for c in columns if c.startswith("RTE")))] == f"{np.mean(rte) * 100:.1f}"
    means = [np.mean([r["best"] for r in results["finetune"]["bigs"][t].values()]) for t in budget.tasks]
    assert cells[-1] == f"{np.mean(means) * 100:.1f}"
    for model in study.MODELS:
        for task in budget.tasks:
            run = results["finetune"][model][task]["0"]
            history = [h[next(k for k in h if k != "step")][run["metric"]] for h in run["history"]]
            assert run["best"] == max(history)                     # the best evaluation, for both sides


def test_pretraining_is_equal(study, finished):
    out, results = finished
    bigs_train, bert_train = records(out / "pretrain" / "bigs", "train"), records(out / "pretrain" / "bert", "train")
    # the same sequences in the same order: the same tokens at every logged step
    assert [(r["step"], r["tokens"]) for r in bigs_train] == [(r["step"], r["tokens"]) for r in bert_train]
    assert [r["learning_rate"] for r in bigs_train] == pytest.approx([r["learning_rate"] for r in bert_train])
    bigs_eval, bert_eval = records(out / "pretrain" / "bigs", "eval"), records(out / "pretrain" / "bert", "eval")
    assert [r["masked_tokens"] for r in bigs_eval] == [r["masked_tokens"] for r in bert_eval]
    assert results["pretrain"]["bigs"]["eval"]["loss"] == pytest.approx(bigs_eval[-1]["loss"])
    assert results["pretrain"]["bert"]["eval"]["loss"] == pytest.approx(bert_eval[-1]["loss"])
    counts = results["pretrain"]["bigs"]["parameters"], results["pretrain"]["bert"]["parameters"]
    assert abs(counts[0] - counts[1]) / counts[0] < 0.01


def test_kernel_reaches_are_the_checkpoints(study, finished):
    from bigs import plot
    from bigs.weights import read_params

    out, results = finished
    learned = plot.kernel_profiles(read_params(str(out / "pretrain" / "bigs")), length=128)
    assert results["kernels"]["learned"] == plot.profiles_json(learned)


def test_bert_mlm_at_labels_is_bert_for_masked_lm_loss(study):
    import torch
    from transformers import BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(study.bert_config(study.BUDGETS["tiny"], 50)).eval()
    input_ids = torch.randint(5, 50, (3, 12))
    labels = torch.full_like(input_ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 0], labels[2, 11] = 7, 9, 11, 13
    arrays = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
              "token_type_ids": torch.zeros_like(input_ids), "labels": labels}
    with torch.no_grad():
        loss_sum, _, count = study.mlm_at_labels(model, arrays)
        reference = model(**arrays).loss                        # logits at every position, HF's loss
    assert count == 4
    torch.testing.assert_close(loss_sum / count, reference, rtol=1e-5, atol=1e-6)


def test_a_rerun_skips_finished_stages_and_redoes_a_missing_one(study, finished, capsys):
    out, results = finished
    capsys.readouterr()
    again = study.run_study(out, study.BUDGETS["tiny"])
    printed = capsys.readouterr().out
    assert "..." not in printed and printed.count("skipped") == len(again["stage_seconds"])
    assert again["table"] == results["table"]
    stage = out / "finetune" / "bert_random" / "rte" / "seed0"
    (stage / "done.json").unlink()                              # as if it was killed before finishing
    study.run_study(out, study.BUDGETS["tiny"])
    printed = capsys.readouterr().out
    assert [line for line in printed.splitlines() if line.endswith("...")] == [
        "[study] finetune bert_random rte seed 0 ..."]
    assert (stage / "done.json").is_file()
    rerun = json.loads((out / "results.json").read_text())["finetune"]["bert_random"]["rte"]["0"]
    assert rerun["best"] == results["finetune"]["bert_random"]["rte"]["0"]["best"]   # seeded: the same result


def test_a_study_folder_of_another_budget_or_with_other_files_is_refused(study, finished, tmp_path, capsys):
    import dataclasses

    out, _ = finished
    other = dataclasses.replace(study.BUDGETS["tiny"], pretrain_steps=5)
    with pytest.raises(study.StudyError, match="holds a study of --budget tiny, not this one"):
        study.run_study(out, other)
    capsys.readouterr()
    assert study.main(["--budget", "short", "--out", str(out)]) == 2     # a named budget: its name
    assert "holds a study of --budget tiny, not this one; rerun with --budget tiny" in capsys.readouterr().err
    edited = tmp_path / "edited"                                          # an edited one: the field
    study.check_budget(edited, other)
    with pytest.raises(study.StudyError, match="holds a study with pretrain_steps=5, not 4"):
        study.check_budget(edited, study.BUDGETS["tiny"])
    shutil.rmtree(edited)
    (tmp_path / "mine.txt").write_text("the user's")
    assert study.main(["--budget", "tiny", "--out", str(tmp_path)]) == 2
    assert "holds files and no study" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]
