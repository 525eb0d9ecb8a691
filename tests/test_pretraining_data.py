"""Pretraining shards: building from text, reading back, masking, packing, resumable batches."""

import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from bigs.data.pretraining import (
    BERT_UNCASED,
    FIELDS,
    IGNORE_INDEX,
    DataPosition,
    ShardDataset,
    build_shards,
    build_shards_main,
    dynamic_mask,
    labels_from_positions,
    load_wordpiece,
    positions_from_labels,
    read_documents,
    read_shard,
    restore_original_ids,
    train_wordpiece,
    write_shard,
)
from bigs.errors import ConfigError, DataError

SEQ_LEN = 64
MAX_PREDICTIONS = 10
CLS, SEP, PAD, MASK = BERT_UNCASED.cls_id, BERT_UNCASED.sep_id, BERT_UNCASED.pad_id, BERT_UNCASED.mask_id


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


def _all_examples(folder: Path, split: str) -> dict[str, np.ndarray]:
    shards = [read_shard(path) for path in sorted(folder.glob(f"{split}_shard_*.hdf5"))]
    return {name: np.concatenate([shard[name] for shard in shards]) for name in shards[0]}


# ---------------------------------------------------------------------------------- building


def test_build_writes_the_original_layout(built):
    output_dir, info = built
    train_files = sorted(output_dir.glob("train_shard_*.hdf5"))
    assert len(train_files) == info["num_shards"]["train"] >= 2
    assert len(list(output_dir.glob("test_shard_*.hdf5"))) == info["num_shards"]["test"] == 1
    with h5py.File(train_files[0], "r") as f:  # the keys and dtypes the original reader opens
        assert set(f) == {*FIELDS, "next_sentence_labels"}
        assert f["input_ids"].dtype == np.int32 and f["input_mask"].dtype == np.int8
        assert f["input_ids"].shape == (100, SEQ_LEN) and f["masked_lm_positions"].shape == (100, MAX_PREDICTIONS)
    on_disk = json.loads((output_dir / "data_info.json").read_text())
    assert on_disk == info
    assert info["vocab_size"] == 30522 and info["special_tokens"]["mask_id"] == MASK
    assert (output_dir / "vocab.txt").read_text().splitlines()[MASK] == "[MASK]"
    for split in ("train", "test"):
        examples = _all_examples(output_dir, split)
        assert all(values.dtype == np.int32 for values in examples.values())
        assert len(examples["input_ids"]) == info["num_examples"][split]
        assert int((examples["masked_lm_positions"] > 0).sum()) == info["num_masked_tokens"][split]


def test_build_is_deterministic(corpus_slice, vocab_file, built, tmp_path):
    output_dir, info = built
    again = build_shards(
        corpus_slice, tmp_path, SimpleNamespace(backend=load_wordpiece(vocab_file)), max_seq_length=SEQ_LEN,
        max_predictions_per_seq=MAX_PREDICTIONS, heldout_fraction=0.05, examples_per_shard=100, seed=3,
    )
    assert again["num_examples"] == info["num_examples"]
    first, second = read_shard(output_dir / "train_shard_00001.hdf5"), read_shard(tmp_path / "train_shard_00001.hdf5")
    assert all(np.array_equal(first[name], second[name]) for name in first)


def test_packing(built):
    examples = _all_examples(built[0], "train")
    original = restore_original_ids(examples)
    lengths = examples["input_mask"].sum(axis=1)
    columns = np.arange(SEQ_LEN)
    assert np.array_equal(examples["input_mask"], (columns < lengths[:, None]).astype(np.int32))
    assert lengths.mean() > 0.5 * SEQ_LEN
    for ids, segments, length in zip(original, examples["segment_ids"], lengths):
        assert ids[0] == CLS and ids[length - 1] == SEP and (ids[length:] == PAD).all()
        first_sep, second_sep = np.flatnonzero(ids == SEP)  # [CLS] A [SEP] B [SEP]
        assert 1 < first_sep < second_sep == length - 1
        assert not np.isin(ids[1:length - 1], (CLS, PAD)).any()
        assert (segments[: first_sep + 1] == 0).all() and (segments[first_sep + 1 : length] == 1).all()
        assert (segments[length:] == 0).all()
    assert set(np.unique(examples["next_sentence_labels"])) == {0, 1}


def test_single_segment_packing(corpus_slice, vocab_file, tmp_path):
    build_shards(corpus_slice[:1], tmp_path, str(vocab_file), max_seq_length=SEQ_LEN,
                 heldout_fraction=0, next_sentence=False)
    assert not list(tmp_path.glob("test_shard_*"))
    examples = _all_examples(tmp_path, "train")
    assert "next_sentence_labels" not in examples and (examples["segment_ids"] == 0).all()
    assert ((restore_original_ids(examples) == SEP).sum(axis=1) == 1).all()


def test_static_masking(built):
    examples = _all_examples(built[0], "train")
    original = restore_original_ids(examples)
    positions, ids = examples["masked_lm_positions"], examples["masked_lm_ids"]
    counts = (positions > 0).sum(axis=1)
    candidates = examples["input_mask"].sum(axis=1) - 3  # all but [CLS] and two [SEP]
    expected = np.minimum(MAX_PREDICTIONS, np.maximum(1, np.round(0.15 * candidates)))
    assert np.array_equal(counts, expected)
    for row, count in enumerate(counts):
        chosen = positions[row, :count]
        assert (np.diff(chosen) > 0).all() and (positions[row, count:] == 0).all()
        assert not np.isin(original[row, chosen], (CLS, SEP, PAD)).any()
        assert np.array_equal(ids[row, :count], original[row, chosen])
    labels = labels_from_positions(examples)
    unmasked = labels == IGNORE_INDEX
    assert np.array_equal(examples["input_ids"][unmasked], original[unmasked])
    assert 0.7 < (examples["input_ids"][~unmasked] == MASK).mean() < 0.9


def test_heldout_split_shares_no_document(vocab_file, tmp_path):
    # Document i repeats one word of its own, so every token names the document it came from.
    words = [w for w in vocab_file.read_text().splitlines()[3000:] if w.isalpha() and len(w) > 4][:40]
    text = "\n\n".join(" ".join(f"{word} {word} {word}." for _ in range(8)) for word in words)
    (tmp_path / "docs.txt").write_text(text + "\n")
    info = build_shards([tmp_path / "docs.txt"], tmp_path / "out", str(vocab_file), max_seq_length=32,
                        heldout_fraction=0.2, short_seq_prob=0)
    assert info["num_documents"] == {"test": 8, "train": 32}
    tokenizer = load_wordpiece(vocab_file)
    word_ids = {tokenizer.token_to_id(word) for word in words}

    def words_in(split):
        return set(np.unique(restore_original_ids(_all_examples(tmp_path / "out", split)))) & word_ids

    assert len(words_in("test")) == 8 and len(words_in("train")) == 32
    assert not words_in("test") & words_in("train")


def test_read_documents(tmp_path):
    raw = b" = Title = \r\n \r\n Mr. Smith paid 1 @,@ 000 pounds . He left !\r\nThen\r\n\r\n = = Section = = \r\n\r\nEnd.\r\n"
    (tmp_path / "wiki.raw").write_bytes(raw)
    assert read_documents(tmp_path / "wiki.raw") == [["Mr. Smith paid 1,000 pounds .", "He left !", "Then"], ["End."]]


def test_train_wordpiece(corpus_slice, tmp_path):
    vocab = train_wordpiece(corpus_slice, 300, tmp_path)
    tokens = vocab.read_text().splitlines()
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) <= 300
    info = build_shards(corpus_slice[:1], tmp_path / "out", vocab, max_seq_length=SEQ_LEN, heldout_fraction=0)
    assert info["special_tokens"]["mask_id"] == 4 and info["vocab_size"] == len(tokens)
    assert _all_examples(tmp_path / "out", "train")["input_ids"].max() < len(tokens)


# ----------------------------------------------------------------------------------- masking


def test_dynamic_mask_statistics():
    rng = np.random.default_rng(0)
    n, length = 4000, 128
    lengths = rng.integers(8, length + 1, size=n)
    ids = rng.integers(1000, 30000, size=(n, length))
    ids[:, 0] = CLS
    ids[np.arange(n), lengths - 1] = SEP
    ids[np.arange(length) >= lengths[:, None]] = PAD
    special = np.isin(ids, (CLS, SEP, PAD))
    masked, labels = dynamic_mask(ids, special, np.random.default_rng(1), vocab_size=30522, mask_id=MASK,
                                  max_predictions=20)
    chosen = labels != IGNORE_INDEX
    assert not chosen[special].any()
    assert np.array_equal(labels[chosen], ids[chosen]) and np.array_equal(masked[~chosen], ids[~chosen])
    assert chosen.sum(axis=1).max() <= 20
    assert abs(chosen.sum() / (~special).sum() - 0.15) < 0.01
    as_mask = (masked[chosen] == MASK).mean()
    as_random = ((masked[chosen] != MASK) & (masked[chosen] != ids[chosen])).mean()
    assert abs(as_mask - 0.8) < 0.015 and abs(as_random - 0.1) < 0.01 and abs(1 - as_mask - as_random - 0.1) < 0.01
    again = dynamic_mask(ids, special, np.random.default_rng(1), vocab_size=30522, mask_id=MASK, max_predictions=20)
    assert np.array_equal(again[0], masked) and np.array_equal(again[1], labels)


def test_labels_and_positions_round_trip():
    batch = {
        "input_ids": np.zeros((2, 8), np.int32),
        "masked_lm_positions": np.array([[2, 5, 0], [1, 0, 0]], np.int32),
        "masked_lm_ids": np.array([[7, 9, 0], [4, 0, 0]], np.int32),
    }
    labels = labels_from_positions(batch)
    assert labels.tolist() == [[-100, -100, 7, -100, -100, 9, -100, -100], [-100, 4] + [-100] * 6]
    positions, ids = positions_from_labels(labels, 3)
    assert np.array_equal(positions, batch["masked_lm_positions"]) and np.array_equal(ids, batch["masked_lm_ids"])


# --------------------------------------------------------------------------------- iteration


@pytest.mark.parametrize("dynamic_masking", [False, True])
def test_resume_gives_the_same_batches(built, dynamic_masking):
    output_dir, info = built
    batch_size = 23  # does not divide the shard size, so batches straddle shards and epochs
    num_batches = 2 * info["num_examples"]["train"] // batch_size
    reference = [batch for batch, _ in zip_limit(ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking)
                                                 .iterate(batch_size), num_batches)]
    stop = num_batches // 2 + 1
    for _, position in zip_limit(ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking)
                                 .iterate(batch_size), stop):
        pass
    saved = json.loads(json.dumps(position.to_dict()))
    resumed = ShardDataset(output_dir, seed=5, dynamic_masking=dynamic_masking).iterate(
        batch_size, start=DataPosition.from_dict(saved))
    for expected, (batch, _) in zip(reference[stop:], resumed):
        assert all(np.array_equal(expected[name], batch[name]) for name in expected)
        assert batch["input_ids"].shape == (batch_size, SEQ_LEN)


def zip_limit(iterator, count):
    for index, item in enumerate(iterator):
        if index == count:
            return
        yield item


def test_each_epoch_sees_every_example_once(built):
    output_dir, info = built
    dataset = ShardDataset(output_dir, seed=1, dynamic_masking=True)
    epochs = []
    for epoch in range(2):
        start = DataPosition(epoch=epoch, seed=1, num_shards=dataset.num_shards)
        batches = [b for b, _ in dataset.iterate(64, start=start, num_epochs=epoch + 1, drop_remainder=False)]
        epochs.append(np.concatenate([restore_original_ids(b) for b in batches]))
    everything = restore_original_ids(_all_examples(output_dir, "train"))
    assert len(epochs[0]) == info["num_examples"]["train"]
    for seen in epochs:
        assert sorted(map(bytes, seen)) == sorted(map(bytes, everything))
    assert not np.array_equal(epochs[0], epochs[1])  # reshuffled per epoch


def test_resume_rejects_another_stream(built):
    dataset = ShardDataset(built[0], seed=0)
    with pytest.raises(ConfigError, match="seed=7"):
        next(dataset.iterate(4, start=DataPosition(seed=7, num_shards=dataset.num_shards)))
    with pytest.raises(ConfigError, match="data position"):
        DataPosition.from_dict({"epoch": 0})


def test_dataset_selection(built, tmp_path):
    output_dir, info = built
    assert ShardDataset(output_dir, max_shards=2).num_shards == 2
    assert ShardDataset(output_dir, split="test").num_shards == info["num_shards"]["test"]
    single = ShardDataset(output_dir / "test_shard_00000.hdf5", shuffle=False)
    (batch, _), = single.iterate(10_000, num_epochs=1, drop_remainder=False)
    assert len(batch["input_ids"]) == info["num_examples"]["test"]
    with pytest.raises(DataError, match="no shards in folder"):
        ShardDataset(tmp_path)


# ------------------------------------------------------------------------------- bad shards


def test_bad_shards_raise_data_error(tmp_path):
    (tmp_path / "text.hdf5").write_text("not a shard")
    with pytest.raises(DataError, match="text.hdf5.*not an HDF5 file"):
        read_shard(tmp_path / "text.hdf5")
    with pytest.raises(DataError, match="does not exist"):
        read_shard(tmp_path / "missing.hdf5")
    with h5py.File(tmp_path / "keys.hdf5", "w") as f:
        f["input_ids"] = np.zeros((2, 8), np.int32)
    with pytest.raises(DataError, match="expected the datasets"):
        read_shard(tmp_path / "keys.hdf5")
    good = {
        "input_ids": np.full((2, 8), 5, np.int32), "input_mask": np.ones((2, 8), np.int32),
        "segment_ids": np.zeros((2, 8), np.int32), "masked_lm_positions": np.zeros((2, 3), np.int32),
        "masked_lm_ids": np.zeros((2, 3), np.int32),
    }
    write_shard(tmp_path / "shape.hdf5", {**good, "segment_ids": np.zeros((2, 7), np.int32)})
    with pytest.raises(DataError, match=r"segment_ids has shape \(2, 7\)"):
        read_shard(tmp_path / "shape.hdf5")
    write_shard(tmp_path / "range.hdf5", {**good, "input_ids": np.full((2, 8), 40000, np.int32)})
    with pytest.raises(DataError, match=r"input_ids\[0, 0\] = 40000 is out of range; expected 0..30521"):
        read_shard(tmp_path / "range.hdf5", vocab_size=30522)
    write_shard(tmp_path / "position.hdf5", {**good, "masked_lm_positions": np.full((2, 3), 8, np.int32)})
    with pytest.raises(DataError, match="masked_lm_positions"):
        read_shard(tmp_path / "position.hdf5")


def test_reads_a_single_stacked_array(tmp_path):
    stacked = np.zeros((5, 3, 8), np.int32)
    stacked[0], stacked[1], stacked[3, :, 0], stacked[4, :, 0] = 7, 1, 2, 11
    with h5py.File(tmp_path / "stacked.hdf5", "w") as f:
        f["data"] = stacked
    shard = read_shard(tmp_path / "stacked.hdf5")
    assert shard["input_ids"].shape == (3, 8) and shard["masked_lm_positions"].shape == (3, 8)
    assert (labels_from_positions(shard)[:, 2] == 11).all()


# --------------------------------------------------------------------------------------- CLI


def test_cli(corpus_slice, vocab_file, tmp_path, capsys):
    assert build_shards_main(["--input", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "missing.txt" in error and error.count("\n") == 1
    assert build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file), "--masked_lm_prob", "1.5"]) == 2
    assert "masked_lm_prob=1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path), "--bogus"])
    assert exit_info.value.code == 2
    assert build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file), "--max_seq_length", "64"]) == 0
    assert "train:" in capsys.readouterr().out
    assert build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file)]) == 2  # shards already there
    assert "already holds" in capsys.readouterr().err


def test_folder_input_finds_text_files_in_subfolders(corpus_slice, vocab_file, tmp_path, capsys):
    """`--input corpus/` with corpus/<source>/<file>.txt, as ../shared/data/corpus is laid out."""
    nested = tmp_path / "corpus" / "books"
    nested.mkdir(parents=True)
    (nested / corpus_slice[0].name).write_bytes(corpus_slice[0].read_bytes())
    (tmp_path / "corpus" / "README").write_text("not a text file: no suffix\n")
    assert build_shards_main(["--input", str(tmp_path / "corpus"), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file), "--max_seq_length", "64"]) == 0
    assert "train:" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").glob("train_shard_*.hdf5"))
