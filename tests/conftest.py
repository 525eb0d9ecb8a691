"""Shared test fixtures: the read-only data in ../shared beside the project root."""

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (shared data lives in ../shared beside the project root)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return _require(SHARED / "golden")


@pytest.fixture(scope="session")
def vocab_file() -> Path:
    return _require(SHARED / "data" / "vocab" / "bert-base-uncased-vocab.txt")
