"""``predict``'s output file: what every task's ``predict`` returns, one CSV or JSON per run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from mobilenets.core.distributed import gather_objects
from mobilenets.core.io import write_csv, write_text

__all__ = ["PredictionWriter"]

log = logging.getLogger(__name__)


class PredictionWriter(BasePredictionWriter):
    """Writes what every task's ``predict`` returns (one dict per row) as one CSV or JSON file.

    The ``mobilenets`` command adds it to every run (``--predictions.output_file``); in plain Python, pass it
    in the trainer's callbacks.

    Args:
        output_file: the file to write, JSON if it ends in ``.json``, else CSV; by default
            ``<log dir>/predictions.csv``, or ``predictions.json`` where a row holds a list or a mapping (a COCO
            result's ``bbox``), which a CSV cell cannot keep.
    """

    def __init__(self, output_file: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_file = output_file

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        rows = [row for batch in predictions for row in batch]
        rows = [row for part in gather_objects(rows) for row in part]  # every rank's share; rank 0 writes them
        nested = any(isinstance(value, (list, tuple, dict)) for row in rows for value in row.values())
        default_name = "predictions.json" if nested else "predictions.csv"
        log_dir = trainer.log_dir  # a collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        path = Path(self.output_file or Path(log_dir or trainer.default_root_dir) / default_name)
        if path.suffix == ".json":
            write_text(path, json.dumps(rows))
        else:
            write_csv(path, rows)
        log.info("wrote %d predictions to %s", len(rows), path)
