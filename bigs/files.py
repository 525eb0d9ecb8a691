"""Writing files so that a crash never leaves a half-written one: the one place that does it.

Every file the package writes goes through `atomic_writer` (or `write_text` / `write_bytes` /
`write_json`, built on it): the data goes to a temporary file beside the target, is flushed
to disk, and replaces the target with one `os.replace`. A reader then sees the old file or
the new one, never a mix. Lines appended to a log (`append_line`) are one `os.write` each on
an O_APPEND file, so a crash can tear at most the last line. `check_writable_folder` tells,
before any work, whether an output folder can be made and written; `require_file`, whether
an input file is there, and `read_json_object`, one that must hold a JSON object.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import BiGSError, ConfigError, DataError


def require_file(path: str | os.PathLike, what: str, expected: str) -> None:
    """Raise DataError unless `path` is a file: "{what} 'PATH' is a folder; expected {expected}"
    (or "does not exist; ..."), so a folder given for a file is not called missing."""
    if os.path.isfile(path):
        return
    state = "is a folder" if os.path.isdir(path) else "does not exist"
    raise DataError(f"{what} {str(path)!r} {state}; expected {expected}")


def read_json_object(path: str | os.PathLike, expected: str, error: type[BiGSError] = DataError) -> dict[str, Any]:
    """The JSON object in the file `path`. Raises `error` (a BiGSError kind) in one line naming
    the file and `expected` (what it should be, e.g. "the config.json a run writes") when it
    cannot be read, is not UTF-8 JSON, or holds something other than an object."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as cause:
        raise error(f"{str(path)!r} cannot be read ({cause.strerror}); expected {expected}") from None
    except ValueError as cause:             # not JSON, or not UTF-8
        raise error(f"{str(path)!r} is not valid JSON ({cause}); expected {expected}") from None
    if not isinstance(data, dict):
        raise error(f"{str(path)!r} holds a JSON {type(data).__name__}, not an object; expected {expected}")
    return data


def check_writable_folder(path: str | os.PathLike, flag: str = "output_dir") -> None:
    """ConfigError unless `path` is a folder, or can be made one, that this process may write
    in. A folder that does not exist yet is made and removed again (so a later failure
    leaves nothing behind); `flag` names it in the message."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a file; expected a folder")
    existing, missing = path.absolute(), []
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {str(path)!r} cannot be written: no write permission in {str(existing)!r}")
    try:
        for folder in reversed(missing):
            folder.mkdir()
    except OSError as error:
        raise ConfigError(f"{flag} {str(path)!r} cannot be created ({error.strerror})") from None
    finally:
        for folder in missing:
            if folder.is_dir():
                folder.rmdir()


def check_output_file(path: str | os.PathLike, flag: str, overwrite: bool = False,
                      inputs: tuple[str | os.PathLike | None, ...] = ()) -> None:
    """ConfigError, before any work, unless `path` can be written as a new file: it is not a
    folder, it does not exist (or `overwrite`), it is none of the command's `inputs`, and its
    folder can be made and written (check_writable_folder). `flag` names it."""
    target = Path(path)
    if target.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder; expected a file name")
    for given in inputs:
        if given not in (None, "-") and target.exists() and Path(given).exists() and target.samefile(given):
            raise ConfigError(f"{flag} {str(path)!r} is the input file; write the output elsewhere")
    if target.exists() and not overwrite:
        raise ConfigError(f"{flag} {str(path)!r} exists; pass --overwrite to replace it")
    check_writable_folder(target.parent if str(target.parent) else Path("."), f"the folder of {flag}")


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it replaces `path`.

    For writers that take a file name (h5py, msgpack, a library's `save`). The temporary
    file sits in the same folder (so the rename is atomic) and is removed if the block
    raises; the target is then untouched. Parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns the path."""
    with atomic_writer(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` as UTF-8 to `path` atomically, newlines as given; returns the path."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented, key-sorted JSON with a final newline, atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` and a newline to `path` (created if absent) in one write, then fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync(path: Path) -> None:
    """Flush a written file to disk, so the rename cannot land before its content."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
