"""Text files: which files an input names, how their bytes are decoded, how a corpus splits.

Decoding (`read_text`, one policy for corpus files and for CSV/TSV/JSON data files): UTF-8,
with a leading byte-order mark dropped; else Windows-1252, the usual encoding of older English
texts that are not UTF-8; else Latin-1, which maps every byte to a character. A file holding
one of the five bytes Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) is not
Windows-1252, so it is read as Latin-1. Either fallback warns once, naming the file and the
encoding. Windows-1252 comes first because Latin-1 reads its curly quotes and dashes
(0x80-0x9F) as control characters, which BERT's normaliser drops: "river’s" with the quote
as byte 0x92 would be tokenized as "rivers" instead of "river ’ s".
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..errors import DataError

TEXT_SUFFIXES = (".txt", ".raw", ".text")

_WIKI_HEADING = re.compile(r"^(=+)\s.*\s\1$")  # " = Title = ", " = = Section = = "
_WIKI_ESCAPE = re.compile(r" @(.)@ ")  # wikitext writes "1 @,@ 000" for "1,000"
# After . ! ? (or one closing quote), unless the period ends a title such as "Mr.".
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"']))"
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)"
    r"\s+"
)


def read_text(path: str | os.PathLike) -> str:
    """The text of a file (or of stdin, for "-"), decoded as the module docstring says.

    Line endings are returned as they are in the file (as `open(path, newline="")` reads
    them), so `csv.reader(io.StringIO(read_text(path), newline=""))` reads quoted fields with
    embedded newlines as csv expects.

    Raises:
      DataError: the file cannot be read, or holds NUL bytes (UTF-16, or not text at all).

    Warns:
      UnicodeWarning: the file is not UTF-8; the message names the file and the encoding used.
    """
    if str(path) == "-" and not hasattr(sys.stdin, "buffer"):     # stdin replaced by a text stream
        return sys.stdin.read()
    try:
        raw = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"file {str(path)!r} cannot be read ({error.strerror}); expected a text file") from error
    if b"\0" in raw:
        raise DataError(f"file {str(path)!r} holds NUL bytes; expected plain text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text, encoding = raw.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, encoding = raw.decode("latin-1"), "Latin-1"
    # stacklevel=2 names the caller's line, so a file read twice there (a vocabulary trained,
    # then shards built) warns once under Python's default warning filter.
    warnings.warn(f"{str(path)!r} is not UTF-8; read it as {encoding}", UnicodeWarning, stacklevel=2)
    return text


def read_documents(path: str | os.PathLike) -> list[list[str]]:
    """The documents of a text file, each a list of sentences.

    Blank lines separate documents (BERT's convention); the lines of a document are joined
    and split after ".", "!" or "?". Wikitext heading lines are dropped and its "@-@"
    escapes undone. CRLF and LF both work; the bytes are decoded by `read_text`.

    Raises:
      DataError: the file cannot be read or holds NUL bytes.
    """
    text = read_text(path)
    documents, lines = [], []
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if not line:
            if lines:
                paragraph = _WIKI_ESCAPE.sub(r"\1", " ".join(lines))
                documents.append([s for s in _SENTENCE_BREAK.split(paragraph) if s])
                lines = []
        elif not _WIKI_HEADING.match(line):
            lines.append(line)
    return documents


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; folders replaced by the *.txt/*.raw/*.text files in them and their
    subfolders, sorted. Raises DataError for a missing input, a folder without text files,
    or no inputs at all."""
    files = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
            if not found:
                raise DataError(
                    f"input folder {str(path)!r} has no text files; expected *{', *'.join(TEXT_SUFFIXES)}"
                )
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input {str(path)!r} does not exist; expected a text file or a folder of them")
    if not files:
        raise DataError("no input files given; expected at least one text file or folder")
    return files
