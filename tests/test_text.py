"""Text files (bigs.data.text): documents and sentences, and the decoding of files that are not UTF-8."""

import csv
import io
import warnings

import pytest

from bigs.cli.build_shards import main as build_shards_main
from bigs.data.build import build_shards
from bigs.data.masking import restore_original_ids
from bigs.data.shards import read_shard
from bigs.data.text import read_documents, read_text
from bigs.errors import DataError
from bigs.tokenizer import load_wordpiece

# "The river’s bank." with the right single quote as Windows-1252 writes it (0x92).
RIVER_CP1252 = b"The river\x92s bank.\r\n"


def test_read_documents(tmp_path):
    raw = b" = Title = \r\n \r\n Mr. Smith paid 1 @,@ 000 pounds . He left !\r\nThen\r\n\r\n = = Section = = \r\n\r\nEnd.\r\n"
    (tmp_path / "wiki.raw").write_bytes(raw)
    assert read_documents(tmp_path / "wiki.raw") == [["Mr. Smith paid 1,000 pounds .", "He left !", "Then"], ["End."]]


def test_windows_1252_keeps_its_quotes(vocab_file, tmp_path):
    """Read as Latin-1, 0x92 would be the control character U+0092, which BERT's normaliser
    drops, and "river’s" would become the one token "rivers"."""
    path = tmp_path / "old.txt"
    path.write_bytes(RIVER_CP1252)
    with pytest.warns(UnicodeWarning, match="old.txt' is not UTF-8; read it as Windows-1252"):
        documents = read_documents(path)
    assert documents == [["The river\u2019s bank."]]
    tokens = load_wordpiece(vocab_file).encode(documents[0][0], add_special_tokens=False).tokens
    assert tokens == ["the", "river", "\u2019", "s", "bank", "."]


def test_windows_1252_file_builds_shards_with_the_apostrophe(vocab_file, tmp_path):
    (tmp_path / "old.txt").write_bytes(RIVER_CP1252 * 3)
    with pytest.warns(UnicodeWarning, match="Windows-1252"):
        build_shards([tmp_path / "old.txt"], tmp_path / "out", str(vocab_file), max_seq_length=16,
                     heldout_fraction=0, next_sentence=False)
    ids = restore_original_ids(read_shard(tmp_path / "out" / "train_shard_00000.hdf5"))[0]
    tokenizer = load_wordpiece(vocab_file)
    river, quote, s = (tokenizer.token_to_id(token) for token in ("river", "\u2019", "s"))
    assert [river, quote, s] in [ids[i : i + 3].tolist() for i in range(len(ids) - 2)]
    assert tokenizer.token_to_id("rivers") not in ids


@pytest.mark.parametrize("undefined", [b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d"])
def test_bytes_windows_1252_leaves_undefined_mean_latin_1(undefined, tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 \x92" + undefined + b"\n")
    with pytest.warns(UnicodeWarning, match="latin.txt' is not UTF-8; read it as Latin-1"):
        text = read_text(path)
    assert text == "caf\xe9 \x92" + undefined.decode("latin-1") + "\n"


def test_utf8_with_or_without_bom_gives_no_warning(tmp_path):
    utf8 = "The river\u2019s bank, caf\xe9.\r\n".encode()
    (tmp_path / "plain.txt").write_bytes(utf8)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + utf8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_text(tmp_path / "plain.txt") == read_text(tmp_path / "bom.txt") == utf8.decode()
        assert read_documents(tmp_path / "bom.txt") == [["The river\u2019s bank, caf\xe9."]]


def test_one_warning_per_file_that_is_not_utf8(vocab_file, tmp_path):
    files = {"cp1252.txt": RIVER_CP1252, "latin.txt": b"Caf\xe9 \x9d here.\n", "utf8.txt": "Caf\xe9 here.\n".encode(),
             "bom.txt": b"\xef\xbb\xbfThe end.\n"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build_shards([tmp_path / name for name in files], tmp_path / "out", str(vocab_file), max_seq_length=16,
                     heldout_fraction=0)
    messages = sorted(str(warning.message) for warning in caught)
    assert messages == [f"{str(tmp_path / 'cp1252.txt')!r} is not UTF-8; read it as Windows-1252",
                        f"{str(tmp_path / 'latin.txt')!r} is not UTF-8; read it as Latin-1"]
    assert all(warning.category is UnicodeWarning for warning in caught)


def test_a_file_read_twice_in_one_run_warns_once(tmp_path, capsys):
    """--train_vocab_size reads the corpus twice (training, then building); under Python's
    default warning filter the user sees one warning for the file."""
    (tmp_path / "old.txt").write_bytes(RIVER_CP1252 * 20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        assert build_shards_main(["--input", str(tmp_path / "old.txt"), "--output_dir", str(tmp_path / "out"),
                                  "--train_vocab_size", "40", "--max_seq_length", "16",
                                  "--heldout_fraction", "0"]) == 0
    assert [str(warning.message) for warning in caught] == [
        f"{str(tmp_path / 'old.txt')!r} is not UTF-8; read it as Windows-1252"]


def test_csv_reads_quoted_newlines_from_the_decoded_text(tmp_path):
    """A data file's text, wrapped in io.StringIO(newline=""), reads as csv reads the file."""
    path = tmp_path / "pairs.csv"
    path.write_bytes(b'id,text\r\n1,"two\r\nlines \x93quoted\x94"\r\n2,"a\nb"\r\n')
    with pytest.warns(UnicodeWarning, match="Windows-1252"):
        rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    with open(path, encoding="cp1252", newline="") as f:
        assert rows == list(csv.reader(f))
    assert rows == [["id", "text"], ["1", "two\r\nlines \u201cquoted\u201d"], ["2", "a\nb"]]


def test_unreadable_files_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="missing.txt.*cannot be read"):
        read_text(tmp_path / "missing.txt")
    (tmp_path / "utf16.txt").write_bytes("text".encode("utf-16"))
    with pytest.raises(DataError, match="utf16.txt.*holds NUL bytes"):
        read_documents(tmp_path / "utf16.txt")
