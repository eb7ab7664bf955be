"""Helpers the tests share."""

import csv
import os
from pathlib import Path


def logged_metrics(root: Path) -> list[dict]:
    """Every row of every ``metrics.csv`` Lightning's CSV logger wrote under ``root``."""
    return [row for path in sorted(Path(root).rglob("metrics.csv")) for row in csv.DictReader(path.open())]


#: A fresh launch: no rendezvous left in the environment by an earlier in-process DDP test (its port may be taken).
LAUNCH_ENV = {key: value for key, value in os.environ.items()
              if key not in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK",
                             "GROUP_RANK", "LOCAL_WORLD_SIZE", "PL_GLOBAL_SEED")} | {"OMP_NUM_THREADS": "1"}
