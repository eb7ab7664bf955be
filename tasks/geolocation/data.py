"""Geotagged photos: ``IMG_ID,LAT,LON`` CSVs (MP-16 / Im2GPS convention, column names configurable) plus an image
folder, with the training photos' S2 partition built once in ``prepare_data`` or read from a partition file."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
from torchvision.transforms import v2

from mobilenets.tasks.datamodule import BadRecordError, BaseDataModule, ImageRecord, eval_transform, train_transform
from mobilenets.tasks.geolocation.partition import (
    Partition,
    build_partition,
    cell_ids,
    read_partition,
    validate_coordinates,
    write_partition,
)
from mobilenets.tasks.geolocation.synthetic import write_geotagged

__all__ = ["GeoDataModule", "read_geotagged_csv"]

log = logging.getLogger(__name__)


def read_geotagged_csv(path: Path, columns: tuple[str, str, str], skip_bad: bool = False
                       ) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Image ids, latitudes, longitudes of a geotagged CSV; bad coordinates raise naming the row (or are skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: geotagged CSV not found")
    id_column, lat_column, lon_column = columns
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise BadRecordError(f"{path}: missing columns {missing}; has {reader.fieldnames}")
        rows = list(reader)

    def number(text: str) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return float("nan")  # non-numeric: reported as an invalid coordinate with its row

    lat = np.array([number(row[lat_column]) for row in rows])
    lon = np.array([number(row[lon_column]) for row in rows])
    valid, skipped = validate_coordinates(lat, lon, str(path), skip_bad)
    ids = [row[id_column] for row, ok in zip(rows, valid) if ok]
    return ids, lat[valid], lon[valid], skipped


class GeoDataModule(BaseDataModule):
    """PlaNet's data: geotagged images and the adaptive S2 partition of the training photos.

    Args:
        root: the folder holding the CSVs, the image folder and (by default) the partition file.
        train_csv, val_csv, test_csv, image_dir: paths relative to ``root``.
        columns: the CSV's id, latitude and longitude column names.
        image_suffix: appended to an id to name its image file.
        partition_file: a partition CSV to use; by default ``partition_t1-<t1>_t2-<t2>.csv`` in ``root``,
            built from the training CSV on first use (rank 0 only).
        t1, t2, min_level, max_level: the partition's parameters (PlaNet: 10,000 and 50).
        **kwargs: the shared data arguments, see ``BaseDataModule``.
    """

    def __init__(self, root: str, train_csv: str = "train.csv", val_csv: str = "val.csv", test_csv: str = "test.csv",
                 image_dir: str = "images", columns: tuple[str, str, str] = ("IMG_ID", "LAT", "LON"),
                 image_suffix: str = ".jpg", partition_file: str | None = None, t1: int = 10_000, t2: int = 50,
                 min_level: int = 2, max_level: int = 13, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.partition: Partition | None = None

    @property
    def partition_path(self) -> Path:
        hp = self.hparams
        return Path(hp.partition_file) if hp.partition_file else self.root / f"partition_t1-{hp.t1}_t2-{hp.t2}.csv"

    @property
    def num_cells(self) -> int:
        return len(self.partition) if self.partition is not None else 0

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_geotagged(root, **options)

    def prepare_data(self) -> None:
        """Synthetic data if asked for, then the partition of the training photos if there is none yet."""
        super().prepare_data()
        if not self.partition_path.is_file():
            hp = self.hparams
            _, lat, lon, _ = read_geotagged_csv(self.root / hp.train_csv, tuple(hp.columns), hp.skip_bad)
            partition = build_partition(lat, lon, hp.t1, hp.t2, hp.min_level, hp.max_level)
            write_partition(partition, self.partition_path)
            log.info("partition of %d photos into %d cells written to %s", len(lat), len(partition), self.partition_path)

    def train_transform(self) -> v2.Transform:
        return train_transform(self.hparams.resolution, min_scale=0.5)

    def eval_transform(self) -> v2.Transform:
        return eval_transform(self.hparams.resolution, crop_fraction=1.0)

    def _records(self, csv_name: str) -> list[ImageRecord]:
        hp = self.hparams
        path = self.root / csv_name
        ids, lat, lon, skipped = read_geotagged_csv(path, tuple(hp.columns), hp.skip_bad)
        self.skipped += skipped
        cells = self.partition.classify(cell_ids(lat, lon))
        records = []
        for row, (image_id, cell, la, lo) in enumerate(zip(ids, cells, lat, lon)):
            image = self.root / hp.image_dir / f"{image_id}{hp.image_suffix}"
            if not image.is_file():
                message = f"{image} ({path.name}, id {image_id}): image file not found"
                if not hp.skip_bad:
                    raise BadRecordError(message)
                self.skipped.append(message)
                continue
            records.append(ImageRecord(image, (float(cell), float(la), float(lo)), f"{path.name}:{image_id}"))
        return records

    def read_splits(self) -> dict[str, list[ImageRecord]]:
        self.partition = read_partition(self.partition_path)
        splits = {split: self._records(getattr(self.hparams, f"{split}_csv")) for split in ("train", "val", "test")}
        outside = [r for r in splits["train"] if r.label[0] < 0]
        if outside:
            log.warning("%d training photos lie in no partition cell (dropped cells); left out of training", len(outside))
            splits["train"] = [r for r in splits["train"] if r.label[0] >= 0]
        return splits
