"""Building pretraining shards from text (bigs.data.build), and its command `bigs build-shards`."""

import json
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from bigs.cli.build_shards import main as build_shards_main
from bigs.data.build import build_shards
from bigs.data.masking import BERT_UNCASED, IGNORE_INDEX, labels_from_positions, restore_original_ids
from bigs.data.shards import FIELDS, read_shard
from bigs.tokenizer import load_wordpiece, train_wordpiece

from shard_samples import MAX_PREDICTIONS, SEQ_LEN, all_examples, built, corpus_slice  # noqa: F401 (fixtures)

CLS, SEP, PAD, MASK = BERT_UNCASED.cls_id, BERT_UNCASED.sep_id, BERT_UNCASED.pad_id, BERT_UNCASED.mask_id


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
        examples = all_examples(output_dir, split)
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
    examples = all_examples(built[0], "train")
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
    examples = all_examples(tmp_path, "train")
    assert "next_sentence_labels" not in examples and (examples["segment_ids"] == 0).all()
    assert ((restore_original_ids(examples) == SEP).sum(axis=1) == 1).all()


def test_static_masking(built):
    examples = all_examples(built[0], "train")
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
        return set(np.unique(restore_original_ids(all_examples(tmp_path / "out", split)))) & word_ids

    assert len(words_in("test")) == 8 and len(words_in("train")) == 32
    assert not words_in("test") & words_in("train")


def test_train_wordpiece(corpus_slice, tmp_path):
    vocab = train_wordpiece(corpus_slice, 300, tmp_path)
    tokens = vocab.read_text().splitlines()
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] and len(tokens) <= 300
    info = build_shards(corpus_slice[:1], tmp_path / "out", vocab, max_seq_length=SEQ_LEN, heldout_fraction=0)
    assert info["special_tokens"]["mask_id"] == 4 and info["vocab_size"] == len(tokens)
    assert all_examples(tmp_path / "out", "train")["input_ids"].max() < len(tokens)


# --------------------------------------------------------------------------------------- CLI


def test_cli(corpus_slice, vocab_file, tmp_path, capsys):
    assert build_shards_main(["--input", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("bigs build-shards: error: ") and "missing.txt" in error and error.count("\n") == 1
    assert build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path / "out"),
                              "--vocab_file", str(vocab_file), "--masked_lm_prob", "1.5"]) == 2
    assert "--masked_lm_prob=1.5" in capsys.readouterr().err
    # checked before a vocabulary is trained (which takes a while on a real corpus)
    assert build_shards_main(["--input", str(corpus_slice[0]), "--output_dir", str(tmp_path / "out"),
                              "--train_vocab_size", "100", "--max_seq_length", "0"]) == 2
    assert "--max_seq_length=0; expected an integer >= 5" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
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


def test_a_user_s_vocab_or_earlier_build_is_not_replaced_and_a_failed_build_leaves_nothing(
        corpus_slice, vocab_file, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "vocab.txt").write_text("my own vocabulary\n")
    argv = ["--input", str(corpus_slice[0]), "--output_dir", str(mine), "--max_seq_length", "64"]
    assert build_shards_main([*argv, "--vocab_file", str(vocab_file)]) == 2
    assert "already holds vocab.txt" in capsys.readouterr().err
    assert (mine / "vocab.txt").read_text() == "my own vocabulary\n" and sorted(mine.iterdir()) == [mine / "vocab.txt"]
    # The vocab.txt the build is given may be the one in output_dir.
    (mine / "vocab.txt").write_bytes(vocab_file.read_bytes())
    assert build_shards_main([*argv, "--vocab_file", str(mine / "vocab.txt")]) == 0
    capsys.readouterr()
    # An output_dir under a file, and a failed build that trained a vocabulary: one line, no debris.
    (tmp_path / "afile").write_text("x")
    assert build_shards_main([*argv[:2], "--output_dir", str(tmp_path / "afile" / "out"),
                              "--vocab_file", str(vocab_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("\n\n")
    assert build_shards_main(["--input", str(tmp_path / "empty.txt"), "--output_dir", str(tmp_path / "new"),
                              "--train_vocab_size", "200"]) == 2
    assert "hold no text" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # --overwrite with input that is refused leaves the earlier build as it was.
    before = {p.name: p.read_bytes() for p in mine.iterdir()}
    for vocab in (["--vocab_file", str(vocab_file)], ["--train_vocab_size", "200"]):
        assert build_shards_main(["--input", str(tmp_path / "empty.txt"), "--output_dir", str(mine), "--overwrite",
                                  *vocab]) == 2
        assert {p.name: p.read_bytes() for p in mine.iterdir()} == before
