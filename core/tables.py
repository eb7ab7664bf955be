"""Tables the suite prints (profiles beside the paper, benchmarks): one type, rendered as markdown or JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

__all__ = ["Table", "render"]


@dataclass
class Table:
    """A titled table with optional notes under it."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        lines += [""] + [f"{note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def render(tables: Sequence[Table], fmt: str = "markdown") -> str:
    """Render tables as markdown or JSON."""
    if fmt == "json":
        return json.dumps([table.to_dict() for table in tables], indent=2)
    if fmt == "markdown":
        return "\n".join(table.to_markdown() for table in tables)
    raise ValueError(f"format must be 'markdown' or 'json', got {fmt!r}")
