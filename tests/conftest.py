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


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory):
    """A persistent compilation cache for one test module, whose runs each jit their own
    steps: the tiny model's programs then compile once per module."""
    import jax

    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_compilation_cache_dir", None)
