"""Atomic file writing: a file the suite writes is either complete or absent (results, exports, checkpoints)."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any, Iterator

__all__ = ["replacing", "write_csv", "write_text"]


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed over ``path`` when the block succeeds and removed when
    it fails: a file at ``path`` is always complete (results, exports, checkpoints, shard indexes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    """Write a results file atomically (``replacing``)."""
    with replacing(path) as partial:
        partial.write_text(text)
    return Path(path)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Write rows (dicts with the same keys) as CSV, atomically (``write_text``)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [])
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())
