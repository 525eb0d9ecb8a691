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
