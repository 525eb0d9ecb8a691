"""The README's quickstart runs as written and prints a prediction."""

import contextlib
import io
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_snippet_runs(golden_dir, monkeypatch):
    snippet = re.search(r"## Quickstart.*?```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})
    text = printed.getvalue()
    assert "predicted classes:" in text
    assert float(text.rsplit(":", 1)[1]) < 2e-5


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    command = 'pip install -e ".[test]" && python -m pytest -q'
    assert command in readme and command in (ROOT / ".ci" / "run").read_text()
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_pytorch_quickstart_snippet_runs(golden_dir, monkeypatch):
    import pytest

    pytest.importorskip("torch", reason="the PyTorch quickstart needs the torch extra")
    pytest.importorskip("transformers", reason="the PyTorch quickstart needs transformers >= 5")
    readme = (ROOT / "README.md").read_text()
    snippet = re.search(r"## Quickstart: PyTorch.*?```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(ROOT)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(snippet, "README.md", "exec"), {})
    text = printed.getvalue()
    assert "predicted classes: [" in text
    assert float(text.rsplit(":", 1)[1]) < 2e-5


def test_pytorch_tools_snippets_run(tmp_path, vocab_file, monkeypatch):
    """Each snippet of "Using BiGS from PyTorch and transformers", in order, on a tiny model
    saved as `bigs_demo` (what `bigs demo` saves: a classifier with its tokenizer)."""
    import pytest

    torch = pytest.importorskip("torch", reason="the snippets need the torch extra")
    pytest.importorskip("sentence_transformers", reason="the snippets need the sentence extra")
    pytest.importorskip("onnxruntime", reason="the snippets need the onnx extra")
    import bigs.torch as bt
    from bigs import BiGSTokenizer
    from bigs.cli.main import main

    section = re.search(r"## Using BiGS from PyTorch and transformers\n(.*?)\n## ", (ROOT / "README.md").read_text(),
                        re.S).group(1)
    snippets = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(snippets) == 4
    torch.manual_seed(0)
    config = bt.BiGSTransformersConfig(vocab_size=30522, hidden_size=16, intermediate_size=24, num_hidden_layers=1,
                                       num_ssm=4, max_position_embeddings=64, num_labels=2)
    bt.BiGSForSequenceClassification(config).save_pretrained(tmp_path / "bigs_demo")
    BiGSTokenizer.from_vocab(str(vocab_file)).save_pretrained(tmp_path / "bigs_demo")
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for index, snippet in enumerate(snippets):
            if "onnxruntime" in snippet:
                command = re.search(r"`bigs (export-onnx [^`]*)`", section.replace("\n", " ")).group(1).split()
                assert main(command) == 0
            exec(compile(snippet, f"README.md snippet {index}", "exec"), {})
    text = printed.getvalue()
    assert "'label': 'LABEL_" in text and "closest:" in text
    assert (tmp_path / "bigs_demo_torch" / "model.safetensors").exists()
