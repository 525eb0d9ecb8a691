"""BiGSTokenizer against the real BERT uncased vocabulary."""

import json

import numpy as np
import pytest

from bigs.errors import CheckpointError, DataError, InputError
from bigs.tokenizer import BiGSTokenizer

# Ids in bert-base/large-uncased vocab.txt (id = line number - 1).
CLS, SEP, PAD, UNK, MASK = 101, 102, 0, 100, 103
HELLO, COMMA, WORLD, BANG = 7592, 1010, 2088, 999


@pytest.fixture(scope="module")
def tokenizer(vocab_file):
    return BiGSTokenizer.from_vocab(str(vocab_file))


def test_ids_match_vocab_file(vocab_file):
    lines = vocab_file.read_text(encoding="utf-8").split("\n")
    for token, token_id in [("[PAD]", PAD), ("[UNK]", UNK), ("[CLS]", CLS), ("[SEP]", SEP), ("[MASK]", MASK),
                            ("hello", HELLO), (",", COMMA), ("world", WORLD), ("!", BANG)]:
        assert lines[token_id] == token


def test_special_tokens_and_size(tokenizer):
    assert tokenizer.vocab_size == len(tokenizer) == 30522
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.cls_token_id,
            tokenizer.sep_token_id, tokenizer.mask_token_id) == (PAD, UNK, CLS, SEP, MASK)


def test_hello_world(tokenizer):
    batch = tokenizer("Hello, world!")
    assert batch["input_ids"].dtype == np.int32
    np.testing.assert_array_equal(batch["input_ids"], [[CLS, HELLO, COMMA, WORLD, BANG, SEP]])
    np.testing.assert_array_equal(batch["attention_mask"], np.ones((1, 6)))
    np.testing.assert_array_equal(batch["token_type_ids"], np.zeros((1, 6)))
    assert tokenizer.encode("Hello, world!") == [CLS, HELLO, COMMA, WORLD, BANG, SEP]
    assert tokenizer.encode("Hello, world!", add_special_tokens=False) == [HELLO, COMMA, WORLD, BANG]


def test_normalisation_and_wordpiece(tokenizer):
    # Uncased: lowercase and strip accents; "[MASK]" typed in text stays one token.
    assert tokenizer.tokenize("HÉLLO [MASK] World") == ["hello", "[MASK]", "world"]
    pieces = tokenizer.tokenize("unaffable")
    assert len(pieces) > 1 and all(piece.startswith("##") for piece in pieces[1:])
    assert tokenizer.decode(tokenizer.encode("unaffable")) == "unaffable"
    assert tokenizer.convert_tokens_to_ids(["hello", "no-such-token"]) == [HELLO, UNK]
    assert tokenizer.convert_ids_to_tokens([CLS, HELLO]) == ["[CLS]", "hello"]
    with pytest.raises(InputError, match="out of range"):
        tokenizer.convert_ids_to_tokens(30522)


def test_decode(tokenizer):
    ids = tokenizer("Hello, world!", padding="max_length", max_length=10)["input_ids"][0]
    assert tokenizer.decode(ids) == "hello, world!"
    assert tokenizer.decode(ids, skip_special_tokens=False).startswith("[CLS] hello, world! [SEP] [PAD]")


def test_pairs_token_types(tokenizer):
    batch = tokenizer(["Hello, world!", "hello"], ["world", "hello world !"])
    np.testing.assert_array_equal(batch["input_ids"], [
        [CLS, HELLO, COMMA, WORLD, BANG, SEP, WORLD, SEP],
        [CLS, HELLO, SEP, HELLO, WORLD, BANG, SEP, PAD],
    ])
    np.testing.assert_array_equal(batch["token_type_ids"], [
        [0, 0, 0, 0, 0, 0, 1, 1],
        [0, 0, 0, 1, 1, 1, 1, 0],
    ])
    np.testing.assert_array_equal(batch["attention_mask"].sum(1), [8, 7])
    with pytest.raises(InputError, match="2 texts but 1 text_pairs"):
        tokenizer(["a", "b"], ["c"])


def test_truncation(tokenizer):
    long_text = " ".join(["hello"] * 50)
    ids = tokenizer(long_text, max_length=8)["input_ids"]
    np.testing.assert_array_equal(ids, [[CLS] + [HELLO] * 6 + [SEP]])
    # Pairs: "longest_first" trims the longer segment until they fit.
    batch = tokenizer(long_text, "world world", max_length=10)
    np.testing.assert_array_equal(batch["input_ids"], [[CLS] + [HELLO] * 5 + [SEP, WORLD, WORLD, SEP]])
    batch = tokenizer(long_text, long_text, max_length=11)
    assert batch["token_type_ids"][0].tolist() == [0] * 6 + [1] * 5
    # Default max_length is model_max_length (512).
    assert tokenizer(" ".join(["hello"] * 600))["input_ids"].shape == (1, 512)
    assert tokenizer(long_text, truncation=False, max_length=8)["input_ids"].shape == (1, 52)
    assert tokenizer.encode(long_text, truncation=True, max_length=4) == [CLS, HELLO, HELLO, SEP]
    with pytest.raises(InputError, match="max_length=2"):
        tokenizer("a", "b", max_length=2)


def test_return_truncated_says_which_rows_were_cut(tokenizer):
    """One tokenisation tells which rows lost tokens, singles and pairs alike, exactly at the edge."""
    fits, over = " ".join(["hello"] * 6), " ".join(["hello"] * 7)      # 8 and 9 tokens with [CLS]/[SEP]
    out = tokenizer([fits, over, "hello"], max_length=8, return_truncated=True)
    assert out["truncated"].dtype == bool and out["truncated"].tolist() == [False, True, False]
    assert out["input_ids"].shape == (3, 8)
    pairs = tokenizer(["hello", "hello hello", over], ["world", "world " * 5, "world"], max_length=8,
                      padding=False, return_numpy=False, return_truncated=True)
    assert pairs["truncated"] == [False, True, True]
    assert [len(ids) for ids in pairs["input_ids"]] == [5, 8, 8]
    assert "truncated" not in tokenizer([over], max_length=8)
    assert tokenizer([over], max_length=8, truncation=False, padding=False, return_numpy=False,
                     return_truncated=True)["truncated"] == [False]
    torch = pytest.importorskip("torch")
    assert tokenizer([over], max_length=8, return_tensors="pt", return_truncated=True)["truncated"].dtype == torch.bool


def test_padding(tokenizer):
    texts = ["hello", "hello world hello"]
    assert tokenizer(texts)["input_ids"].shape == (2, 5)
    batch = tokenizer(texts, padding="max_length", max_length=16)
    assert batch["input_ids"].shape == (2, 16)
    np.testing.assert_array_equal(batch["attention_mask"][0], [1, 1, 1] + [0] * 13)
    np.testing.assert_array_equal(batch["input_ids"][0, 3:], np.full(13, PAD))
    assert tokenizer(texts, pad_to_multiple_of=8)["input_ids"].shape == (2, 8)
    unpadded = tokenizer(texts, padding=False, return_numpy=False)
    assert [len(ids) for ids in unpadded["input_ids"]] == [3, 5]
    with pytest.raises(InputError, match="different lengths"):
        tokenizer(texts, padding=False)
    with pytest.raises(InputError, match="padding='left'"):
        tokenizer(texts, padding="left")
    # A call leaves no padding/truncation behind.
    assert len(tokenizer.encode(" ".join(["hello"] * 600))) == 602


def test_save_and_load_round_trip(tokenizer, vocab_file, tmp_path):
    tokenizer.save_pretrained(str(tmp_path))
    assert (tmp_path / "vocab.txt").read_bytes() == vocab_file.read_bytes()
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["do_lower_case"] is True and config["model_max_length"] == 512
    json.loads((tmp_path / "tokenizer.json").read_text())

    texts, pairs = ["Hello, world!", "Ünïcode and un-affable text"], ["a pair", "another"]
    expected = tokenizer(texts, pairs, padding="max_length", max_length=20)
    reloaded = BiGSTokenizer.from_pretrained(str(tmp_path))
    for key, value in reloaded(texts, pairs, padding="max_length", max_length=20).items():
        np.testing.assert_array_equal(value, expected[key])

    # vocab.txt alone also works, and tokenizer_config.json is honoured.
    (tmp_path / "tokenizer.json").unlink()
    config["model_max_length"] = 128
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    from_vocab = BiGSTokenizer.from_pretrained(str(tmp_path))
    assert from_vocab.model_max_length == 128
    np.testing.assert_array_equal(from_vocab(texts, pairs)["input_ids"], tokenizer(texts, pairs)["input_ids"])


def test_missing_files(tmp_path):
    with pytest.raises(CheckpointError, match="neither tokenizer.json nor vocab.txt"):
        BiGSTokenizer.from_pretrained(str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        BiGSTokenizer.from_vocab(str(tmp_path / "vocab.txt"))
    with pytest.raises(DataError, match=r"vocabulary file '.*' is a folder; expected a BERT vocab.txt"):
        BiGSTokenizer.from_vocab(str(tmp_path))         # a folder is not called missing
    (tmp_path / "vocab.txt").write_text("hello\nworld\n")
    with pytest.raises(DataError, match=r"lacks the special tokens \['\[PAD\]'"):
        BiGSTokenizer.from_vocab(str(tmp_path / "vocab.txt"))


def test_damaged_tokenizer_files_are_named_in_one_line(tmp_path, vocab_file):
    """From a new-user trial: a Windows-1252 vocab.txt, a corrupt tokenizer.json or
    tokenizer_config.json gave the tokenizers library's or json's traceback."""
    from bigs.tokenizer import load_wordpiece

    latin = tmp_path / "latin.txt"
    latin.write_bytes(vocab_file.read_bytes() + "caf\xe9\n".encode("cp1252"))
    lines = len(vocab_file.read_text().splitlines()) + 1
    for read in (BiGSTokenizer.from_vocab, load_wordpiece, BiGSTokenizer.from_pretrained):
        with pytest.raises(DataError, match=rf"latin.txt' is not UTF-8 \(byte 0xe9 on line {lines}\)"):
            read(str(latin))
    assert load_wordpiece(str(vocab_file)).get_vocab() == BiGSTokenizer.from_vocab(str(vocab_file)).backend.get_vocab()
    folder = tmp_path / "model"
    BiGSTokenizer.from_vocab(str(vocab_file)).save_pretrained(folder)
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tokenizer.json' is not a tokenizer file the tokenizers library can read"):
        BiGSTokenizer.from_pretrained(str(folder))
    with pytest.raises(CheckpointError, match=r"tokenizer.json' is not a tokenizer file"):
        BiGSTokenizer.from_pretrained(str(folder / "tokenizer.json"))
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(CheckpointError, match=r"tokenizer_config.json' is not valid JSON"):
        BiGSTokenizer.from_pretrained(str(folder))
    (folder / "tokenizer_config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"tokenizer_config.json' holds a JSON list, not an object"):
        BiGSTokenizer.from_pretrained(str(folder))


def test_return_tensors_as_in_transformers(vocab_file):
    import jax
    import pytest

    from bigs.errors import InputError
    from bigs.tokenizer import BiGSTokenizer

    tokenizer = BiGSTokenizer.from_vocab(str(vocab_file))
    arrays = tokenizer(["hello world", "hi"], return_tensors="np")
    assert arrays["input_ids"].dtype == np.int32 and arrays["input_ids"].shape == (2, 4)
    assert isinstance(tokenizer(["hello"], return_tensors="jax")["input_ids"], jax.Array)
    lists = tokenizer(["hello"], return_numpy=False, return_tensors="np")      # return_tensors wins
    assert isinstance(lists["input_ids"], np.ndarray)
    with pytest.raises(InputError, match="return_tensors='tf'"):
        tokenizer(["hello"], return_tensors="tf")
