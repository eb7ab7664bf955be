"""Atomic file writing: a file the suite writes is either complete or absent (results, exports, checkpoints); and
the reading of users' text files, with an error that names the file and line where one is not UTF-8."""

from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path
from typing import Any, Iterator

from mobilenets.core.errors import BadRecordError

__all__ = ["read_text", "replacing", "write_bytes", "write_csv", "write_text"]


def read_text(path: str | Path) -> str:
    """A text file's contents: UTF-8, with or without the byte-order mark Windows tools write. Another encoding
    (or a binary file given by mistake) raises ``BadRecordError`` naming the file, the line and the fix."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise BadRecordError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}); if this is the right "
                             f"file, re-save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed over ``path`` when the block succeeds and removed when
    it fails: a file at ``path`` is always complete (results, exports, checkpoints, shard indexes). Each process
    writes its own temporary file, so ranks writing the same file at once leave one complete copy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a results file atomically (``replacing``), as UTF-8. A file name that is not UTF-8 (Linux names are
    bytes; Python carries the odd ones as surrogates) is written back as its own bytes, so it still names the file."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8", errors="surrogateescape")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file atomically (``replacing``)."""
    with replacing(path) as partial:
        partial.write_bytes(data)
    return Path(path)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows (dicts with the same keys) as CSV, atomically (``write_text``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())
