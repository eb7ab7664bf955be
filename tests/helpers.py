"""Helpers the tests share."""

import csv
from pathlib import Path


def logged_metrics(root: Path) -> list[dict]:
    """Every row of every ``metrics.csv`` Lightning's CSV logger wrote under ``root``."""
    return [row for path in sorted(Path(root).rglob("metrics.csv")) for row in csv.DictReader(path.open())]
