"""Measured tables with their provenance. The commands that measure (``bench``, ``profile``, ``demo``) save their
tables with ``--save FILE``; the docs render them from these files, so no measured number is typed twice.

A results file is JSON: ``{key: table}``, each table carrying ``title``, ``columns``, ``rows``, optional ``notes``,
and where it came from: ``command``, ``commit``, ``cpu``, ``cores``, ``torch``, ``date``. Saving a table under a
key that is already there replaces it: a file holds the newest run of each measurement. Runs on different hardware
that belong in one table carry the hardware as a column.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

from mobilenets.core.errors import SettingError
from mobilenets.core.io import read_text, write_text
from mobilenets.core.tables import Table

__all__ = ["PROVENANCE", "load_results", "provenance", "results_index", "results_markdown", "save_tables"]

#: The fields that say where a table's numbers came from.
PROVENANCE = ("command", "commit", "cpu", "cores", "torch", "date")


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``'s ``model name`` on Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.partition(":")[2].split())
    except OSError:
        pass
    return platform.processor() or platform.machine()


def source_commit() -> str:
    """The git commit of the suite's source when it runs from a clone, else the installed version."""
    from importlib.metadata import PackageNotFoundError, version

    source = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=False)
        if done.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10, check=False).stdout.strip()
            return done.stdout.strip() + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"mobilenet-suite {version('mobilenet-suite')}"
    except PackageNotFoundError:
        return "unknown"


def provenance(command: str) -> dict[str, Any]:
    """Where a measurement comes from: the command, the code, the CPU and cores, torch, the date."""
    import torch

    return {"command": command, "commit": source_commit(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "date": datetime.date.today().isoformat()}


def load_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """A results file's tables by key; a table without its columns, rows or provenance is refused naming it."""
    path = Path(path)
    try:
        tables = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise SettingError(f"{path}: not a results file ({error})") from None
    if not isinstance(tables, dict):
        raise SettingError(f"{path}: a results file maps table keys to tables, got a {type(tables).__name__}")
    for key, table in tables.items():
        missing = [name for name in ("title", "columns", "rows", *PROVENANCE)
                   if not isinstance(table, dict) or name not in table]
        if missing:
            raise SettingError(f"{path}: table {key!r} lacks {', '.join(missing)}")
        widths = {len(row) for row in table["rows"]}
        if widths - {len(table["columns"])}:
            raise SettingError(f"{path}: table {key!r} has {len(table['columns'])} columns but rows of "
                               f"{sorted(widths)} cells")
    return tables


def save_tables(tables: Sequence[Table], path: str | Path, command: str) -> Path:
    """Add ``tables`` to the results file at ``path`` (made if absent), each with its provenance, replacing the
    tables of the same keys."""
    path = Path(path)
    saved = load_results(path) if path.exists() else {}
    origin = provenance(command)
    for table in tables:
        saved[table.key] = {**origin, "title": table.title, "columns": table.columns,
                            "rows": [[_plain(cell) for cell in row] for row in table.rows], "notes": table.notes}
    return write_text(path, json.dumps(saved, indent=1, ensure_ascii=False) + "\n")


def results_markdown(path: str | Path, key: str) -> str:
    """One saved table as markdown: the table, its notes, and one line saying how and where it was measured."""
    tables = load_results(path)
    if key not in tables:
        raise SettingError(f"{path}: no table {key!r}; it has {', '.join(sorted(tables))}")
    table = tables[key]
    lines = [f"**{table['title']}**", "", "| " + " | ".join(_cell(column) for column in table["columns"]) + " |",
             "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in table["rows"]]
    for note in table.get("notes") or []:
        lines += ["", str(note)]
    cpu = "a CPU not recorded" if table["cpu"] == "not recorded" else table["cpu"]
    cores = f", {table['cores']} cores" if table["cores"] else ""
    lines += ["", f"<small>Measured with `{table['command']}` on {cpu}{cores}, torch {table['torch']}, "
              f"{table['date']} (`results/{Path(path).name}`, table `{key}`).</small>"]
    return "\n".join(lines) + "\n"


def results_index(folder: str | Path) -> str:
    """Every table of every results file in ``folder``, a section per file: the page that lists all measurements."""
    sections = []
    for path in sorted(Path(folder).glob("*.json")):
        sections.append(f"## {path.name}")
        sections += [f"### {table['title']}\n\n" + results_markdown(path, key).split("\n", 2)[2]
                     for key, table in load_results(path).items()]
    return "\n\n".join(sections) + "\n"


def _plain(cell: Any) -> Any:
    """A cell as JSON keeps it: numbers and strings as they are, anything else as its text."""
    return cell if isinstance(cell, (int, float, str)) or cell is None else str(cell)


def _cell(value: Any) -> str:
    return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")
