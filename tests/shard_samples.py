"""Sample pretraining shards for test_build.py and test_shards.py: the same slice of
../shared/data/corpus, built once in each test module that imports these fixtures."""

from pathlib import Path

import numpy as np
import pytest

from bigs.data.build import build_shards
from bigs.data.shards import read_shard

SEQ_LEN = 64
MAX_PREDICTIONS = 10


def _head(source: Path, target: Path, num_lines: int) -> Path:
    """The first lines of a corpus file, bytes unchanged (so CRLF files stay CRLF)."""
    target.write_bytes(b"".join(source.read_bytes().splitlines(keepends=True)[:num_lines]))
    return target


@pytest.fixture(scope="module")
def corpus_slice(shared_dir, tmp_path_factory) -> list[Path]:
    corpus = shared_dir / "data" / "corpus"
    folder = tmp_path_factory.mktemp("corpus")
    return [
        _head(corpus / "gutenberg-nltk" / "austen-emma.txt", folder / "emma.txt", 300),
        _head(corpus / "gutenberg-nltk" / "melville-moby_dick.txt", folder / "moby.txt", 300),  # CRLF
        _head(corpus / "wikitext-2-raw" / "wiki.valid.raw", folder / "wiki.raw", 40),
    ]


@pytest.fixture(scope="module")
def built(corpus_slice, vocab_file, tmp_path_factory) -> tuple[Path, dict]:
    output_dir = tmp_path_factory.mktemp("shards")
    info = build_shards(
        corpus_slice, output_dir, str(vocab_file), max_seq_length=SEQ_LEN,
        max_predictions_per_seq=MAX_PREDICTIONS, heldout_fraction=0.05, examples_per_shard=100, seed=3,
    )
    return output_dir, info


def all_examples(folder: Path, split: str) -> dict[str, np.ndarray]:
    shards = [read_shard(path) for path in sorted(folder.glob(f"{split}_shard_*.hdf5"))]
    return {name: np.concatenate([shard[name] for shard in shards]) for name in shards[0]}
