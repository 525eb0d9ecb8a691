"""bigs.plot and `bigs plot`: the drawn values are the logged and computed ones."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from bigs import plot  # noqa: E402
from bigs.cli.plot import main  # noqa: E402
from bigs.config import BiGSConfig  # noqa: E402
from bigs.errors import DataError  # noqa: E402


def write_run(folder: Path, records: list[dict], command: str = "pretrain", metric: str | None = None) -> Path:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (folder / "run_settings.json").write_text(json.dumps({"command": command}))
    if metric:
        (folder / "eval_results.json").write_text(json.dumps({"metric": metric}))
    return folder


def pretrain_records(scale: float) -> list[dict]:
    records = []
    for step in (10, 20, 30):
        timing = {"train_seconds": scale * step, "tokens": 1000 * step}
        records.append({"kind": "train", "step": step, "loss": 9 - step / 10 * scale, "learning_rate": 1e-3, **timing})
        records.append({"kind": "eval", "step": step, "loss": 8 - step / 20 * scale, "accuracy": 0.1, **timing})
    return records


def test_curves_draw_the_logged_numbers(tmp_path):
    first = write_run(tmp_path / "bigs", pretrain_records(1.0))
    second = write_run(tmp_path / "bert", pretrain_records(2.0))
    figure = plot.plot_curves([first, second], x="seconds")
    train_panel, eval_panel = figure.axes
    for line, scale in zip(train_panel.lines, (1.0, 2.0)):
        np.testing.assert_allclose(line.get_xdata(), [10 * scale, 20 * scale, 30 * scale])
        np.testing.assert_allclose(line.get_ydata(), [9 - s / 10 * scale for s in (10, 20, 30)])
    for line, scale in zip(eval_panel.lines, (1.0, 2.0)):
        np.testing.assert_allclose(line.get_ydata(), [8 - s / 20 * scale for s in (10, 20, 30)])
    assert [line.get_label() for line in eval_panel.lines] == ["bigs", "bert"]
    assert eval_panel.get_ylabel() == "held-out MLM loss"
    tokens = plot.plot_curves([first], x="tokens").axes[0].lines[0].get_xdata()
    np.testing.assert_array_equal(tokens, [10000, 20000, 30000])


def test_fine_tuning_curves_show_the_tasks_metric(tmp_path):
    records = [{"kind": "train", "step": 5, "loss": 0.7, "train_seconds": 1.0, "examples": 40},
               {"kind": "eval", "step": 5, "validation": {"accuracy": 0.6, "f1": 0.5, "combined": 0.55},
                "train_seconds": 1.0, "examples": 40},
               {"kind": "eval", "step": 10, "validation": {"accuracy": 0.7, "f1": 0.6, "combined": 0.65},
                "train_seconds": 2.0, "examples": 80}]
    run = plot.read_run(write_run(tmp_path / "mrpc", records, "glue", "combined"))
    assert run.eval_values() == ("validation combined", [0.55, 0.65])
    odd = plot.read_run(write_run(tmp_path / "odd", records, "glue", 7))      # a damaged eval_results.json
    with pytest.raises(DataError, match=r"run 'odd': eval_results.json names the metric 7, which its evaluations "
                                        r"in metrics.jsonl do not hold \(accuracy, f1, combined\)"):
        odd.eval_values()
    figure = plot.plot_curves([run], x="examples")
    np.testing.assert_array_equal(figure.axes[1].lines[0].get_xdata(), [40, 80])
    np.testing.assert_allclose(figure.axes[1].lines[0].get_ydata(), [0.55, 0.65])


def test_bad_runs_are_named(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        plot.read_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no metrics.jsonl"):
        plot.read_run(tmp_path / "empty")
    torn = write_run(tmp_path / "torn", pretrain_records(1.0))
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"kind": "tra\n')
    with pytest.raises(DataError, match=r"metrics.jsonl:7: not a JSON record"):
        plot.read_run(torn)
    old = write_run(tmp_path / "old", [{"kind": "train", "step": 1, "loss": 3.0}])
    with pytest.raises(DataError, match="no 'tokens'.*plot it against step"):
        plot.plot_curves([old], x="tokens")
    assert plot.plot_curves([old], x="step").axes[0].lines[0].get_ydata()[0] == 3.0


def test_reach_is_the_distance_holding_the_mass():
    assert plot.reach(np.ones(10)) == 8                   # 9 of 10 equal taps hold 90%
    assert plot.reach(np.array([1.0, 0, 0, 0])) == 0
    assert plot.reach(np.zeros(5)) == 0
    assert plot.reach(-np.ones(10), mass=0.5) == 4         # magnitudes: the sign does not matter
    decaying = 0.5 ** np.arange(40)
    assert plot.reach(decaying) == 3                       # 1 + 1/2 + 1/4 + 1/8 = 0.9375 of 2


def direct_kernel(p: dict, length: int) -> np.ndarray:
    """K[k] = Re sum_n C_n (exp(dt A_n) - 1) / A_n exp(k dt A_n), in float64 numpy (S4D, ZOH)."""
    A = np.minimum(p["A_re"].astype(np.float64), -1e-4) + 1j * p["A_im"]
    dt = np.exp(p["log_step"].astype(np.float64))
    C = (p["C"][:, 0] + 1j * p["C"][:, 1]) * (np.exp(dt * A) - 1) / A
    return np.real(np.exp(np.outer(np.arange(length), dt * A)) @ C)


def test_kernel_profiles_are_the_ssm_kernels(tmp_path):
    from bigs.modeling import FlaxBiGSForMaskedLM
    from bigs.weights import read_params

    config = BiGSConfig(vocab_size=40, hidden_size=16, num_hidden_layers=3, intermediate_size=32, num_ssm=4,
                        max_position_embeddings=64)
    model = FlaxBiGSForMaskedLM(config, seed=3)
    model.save_pretrained(tmp_path / "model")
    saved = read_params(str(tmp_path / "model"))          # per-layer, as on disk
    profiles = plot.kernel_profiles(saved, length=64)
    assert [p.layer for p in profiles] == [0, 1, 2]
    for profile in profiles:
        layer = saved["s4_bert"]["encoder"]["layer"][str(profile.layer)]
        for values, reached, name in ((profile.forward, profile.forward_reach, "fs4"),
                                      (profile.backward, profile.backward_reach, "bs4")):
            expected = np.abs(direct_kernel(layer[name], 64))
            np.testing.assert_allclose(values, expected, rtol=2e-4, atol=1e-6 * expected.max())
            assert reached == plot.reach(expected)
    stacked = BiGSConfig.from_dict({**config.to_dict(), "scan_layers": True})
    in_memory = FlaxBiGSForMaskedLM.from_pretrained(str(tmp_path / "model"), config=stacked).params
    again = plot.kernel_profiles(in_memory, length=64)       # stacked layers give the same profiles
    for a, b in zip(profiles, again):
        np.testing.assert_allclose(a.forward, b.forward, rtol=1e-6)
        assert (a.forward_reach, a.backward_reach) == (b.forward_reach, b.backward_reach)
    with pytest.raises(DataError, match="no SSM parameters"):
        plot.kernel_profiles({"bert": {"pooler": {"kernel": np.zeros((2, 2))}}})
    figure = plot.plot_kernels(profiles, profiles)
    np.testing.assert_allclose(figure.axes[0].lines[2].get_ydata(), profiles[0].forward)
    assert figure.axes[0].lines[2].get_label() == f"forward (reach {profiles[0].forward_reach})"


def test_glue_bars_are_mean_and_std_over_seeds():
    table = {"BiGS": {"rte": [0.5, 0.6, 0.7], "sst2": [0.8]}, "BERT": {"rte": [0.55, 0.55, 0.55], "sst2": [0.7]}}
    figure = plot.plot_glue_bars(table)
    from matplotlib.container import BarContainer

    bigs_bars, bert_bars = [c for c in figure.axes[0].containers if isinstance(c, BarContainer)]
    np.testing.assert_allclose([bar.get_height() for bar in bigs_bars], [0.6, 0.8])   # tasks in the table's order
    np.testing.assert_allclose([bar.get_height() for bar in bert_bars], [0.55, 0.7])
    segments = bigs_bars.errorbar.lines[2][0].get_segments()
    np.testing.assert_allclose([seg[1, 1] - seg[0, 1] for seg in segments], [2 * np.std([0.5, 0.6, 0.7]), 0],
                               atol=1e-12)


def test_cli_curves_and_kernels(tmp_path, capsys):
    from bigs.modeling import FlaxBiGSForSequenceClassification

    run = write_run(tmp_path / "run", pretrain_records(1.0))
    out = tmp_path / "curves.png"
    assert main(["curves", str(run), "--x", "tokens", "--output", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["curves", str(run), "--output", str(out)]) == 2                 # never overwrites by default
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["curves", str(run), "--output", str(out), "--overwrite", "--names", "a", "b"]) == 2
    assert "--names has 2 names for 1 run folders" in capsys.readouterr().err
    assert main(["curves", str(tmp_path / "missing"), "--output", str(tmp_path / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "x.png").exists()

    config = BiGSConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, intermediate_size=32, num_ssm=4,
                        max_position_embeddings=64, num_labels=3)
    FlaxBiGSForSequenceClassification(config, seed=0).save_pretrained(tmp_path / "classifier")
    reaches = tmp_path / "reach.json"
    assert main(["kernels", str(tmp_path / "classifier"), "--output", str(tmp_path / "k.png"), "--length", "50",
                 "--compare_init", "--json", str(reaches)]) == 0
    written = json.loads(reaches.read_text())
    from bigs.weights import read_params

    profiles = plot.kernel_profiles(read_params(str(tmp_path / "classifier")), length=50)
    assert written["layers"] == plot.profiles_json(profiles)
    assert len(written["initial"]) == 2 and written["length"] == 50
    assert "90%-mass reach per layer" in capsys.readouterr().out
    assert main(["kernels", str(tmp_path / "classifier"), "--output", str(tmp_path / "k2.png"), "--length", "0"]) == 2
    assert "--length=0" in capsys.readouterr().err
    assert main(["kernels", str(run), "--output", str(tmp_path / "k3.png")]) == 2    # a run folder, not a model
    assert "error:" in capsys.readouterr().err


def test_odd_logs_and_mixed_runs_are_refused_in_one_line(tmp_path):
    binary = tmp_path / "binary"
    binary.mkdir()
    (binary / "metrics.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        plot.read_run(binary)
    listed = write_run(tmp_path / "listed", [])
    (listed / "metrics.jsonl").write_text("[1, 2, 3]\n")
    with pytest.raises(DataError, match=r"metrics.jsonl:1: not a metrics record"):
        plot.read_run(listed)
    (listed / "metrics.jsonl").write_text("")
    with pytest.raises(DataError, match="holds no records yet"):
        plot.read_run(listed)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match="is a file, not a folder"):
        plot.read_run(tmp_path / "afile")
    pretrain = write_run(tmp_path / "pretrain", pretrain_records(1.0))
    glue = write_run(tmp_path / "glue", [{"kind": "eval", "step": 5, "validation": {"accuracy": 0.6},
                                          "train_seconds": 1.0, "examples": 40}], "glue", "accuracy")
    with pytest.raises(DataError, match="evaluate different things.*held-out MLM loss.*validation accuracy"):
        plot.plot_curves([pretrain, glue])
    with pytest.raises(DataError, match="it counts examples \\(pretraining counts tokens, fine-tuning examples\\)"):
        plot.plot_curves([glue], x="tokens")


def test_non_finite_values_are_gaps_with_a_warning_and_non_numbers_are_refused(tmp_path, caplog, capsys):
    """From a new-user trial: a run whose loss went NaN was drawn without a word."""
    records = pretrain_records(1.0)
    records[2]["loss"] = float("nan")          # train, step 20
    records[4]["loss"] = float("inf")          # train, step 30
    records[5]["loss"] = float("nan")          # eval, step 30
    run = write_run(tmp_path / "diverged", records)
    assert "NaN" in (run / "metrics.jsonl").read_text()      # what json.dumps writes and the loop's log holds
    with caplog.at_level("WARNING", logger="bigs"):
        figure = plot.plot_curves([run])
    train, evaluation = (panel.lines[0].get_ydata() for panel in figure.axes)
    np.testing.assert_array_equal(np.isnan(train), [False, True, True])
    np.testing.assert_array_equal(np.isnan(evaluation), [False, False, True])
    assert train[0] == 8.0 and evaluation[1] == 7.0
    assert "run 'diverged': the training loss is not finite at 2 of 3 logged steps (20, 30)" in caplog.text
    assert "the held-out MLM loss is not finite at 1 of 3 logged steps (30)" in caplog.text
    out = tmp_path / "diverged.png"
    assert main(["curves", str(run), "--output", str(out)]) == 0 and out.exists()
    assert "not finite" in capsys.readouterr().err

    records[0]["loss"] = None
    broken = write_run(tmp_path / "broken", records)
    with pytest.raises(DataError, match=r"run 'broken': the record of step 10 has loss=None; expected a number"):
        plot.plot_curves([broken])
    records[3]["loss"] = "low"
    with pytest.raises(DataError, match=r"run 'worse': the record of step 20 has loss='low'; expected a number"):
        plot.plot_curves([write_run(tmp_path / "worse", records)])
    assert main(["curves", str(broken), "--output", str(tmp_path / "b.png")]) == 2
    assert "step 10 has loss=None" in capsys.readouterr().err and not (tmp_path / "b.png").exists()
