"""Geotagged photos: ``IMG_ID,LAT,LON`` CSVs (MP-16 / Im2GPS convention, column names configurable) plus an image
folder, with the training photos' S2 partition built once in ``prepare_data`` or read from a partition file."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
from torchvision.transforms import v2

from mobilenets.core.io import read_text
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.geolocation.partition import (
    Partition,
    build_partition,
    cell_ids,
    read_partition,
    validate_coordinates,
    write_partition,
)
from mobilenets.tasks.geolocation.synthetic import write_geotagged
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, five_crop_transform

__all__ = ["GeoDataModule", "read_geotagged_csv"]

log = logging.getLogger(__name__)


def read_geotagged_csv(path: Path, columns: tuple[str, str, str], skip_bad: bool = False
                       ) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Image ids, latitudes, longitudes of a geotagged CSV; bad coordinates raise naming the row (or are skipped)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: geotagged CSV not found")
    id_column, lat_column, lon_column = columns
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise BadRecordError(f"{path}: missing columns {missing}; has {reader.fieldnames or 'no header (an empty file)'}")
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
        train_csv, val_csv, test_csv, image_dir: paths relative to ``root``. Without a ``val_csv`` file (MP-16 has
            none), a seeded ``val_fraction`` of the training CSV is held out for validation (logged). ``test_csv``
            may list several test sets (Im2GPS and Im2GPS3k): each is tested on its own, its metrics logged as
            ``test/<file stem>/...``.
        columns: the CSV's id, latitude and longitude column names.
        image_suffix: appended to every id to name its image file. By default an id that already ends in an image
            extension is the image's path below ``image_dir`` (GeoEstimation's MP-16 / Im2GPS ``IMG_ID``, such as
            ``104123223_7410c654ba_19_19355699@N00.jpg`` or ``3f/7b/12345678.jpg``), and any other id gets ``.jpg``.
        partition_file: a partition CSV to use; by default ``partition_t1-<t1>_t2-<t2>.csv`` in ``root``,
            built from the training CSV on first use (rank 0 only).
        t1, t2, min_level, max_level: the partition's parameters (PlaNet: 10,000 and 50).
        coarser: (t1, t2) pairs of coarser partitions for the hierarchical multi-partition (one softmax per
            level); their files are built beside the finest one. Labels hold one cell per level, coarsest first.
        test_crops: 5 tests on the four corner and the central crops of each photo, the task averaging their
            probabilities (GeoEstimation's multi-crop testing); 1, one central crop.
        **kwargs: the shared data arguments, see ``BaseDataModule``.
    """

    def __init__(self, root: str, train_csv: str = "train.csv", val_csv: str = "val.csv",
                 test_csv: str | list[str] = "test.csv",
                 image_dir: str = "images", columns: tuple[str, str, str] = ("IMG_ID", "LAT", "LON"),
                 image_suffix: str | None = None, partition_file: str | None = None, t1: int = 10_000, t2: int = 50,
                 min_level: int = 2, max_level: int = 13, coarser: list[tuple[int, int]] | None = None,
                 test_crops: Literal[1, 5] = 1, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        if test_crops not in (1, 5):
            raise ValueError(f"test_crops must be 1 or 5, got {test_crops!r}")
        stems = [Path(name).stem for name in self.test_csvs]
        if not stems or len(set(stems)) < len(stems):
            raise ValueError(f"test_csv must name one or more files with distinct names, got {test_csv!r}")
        if any(t1 <= self.hparams.t1 for t1, _ in coarser or []):
            raise ValueError(f"coarser partitions need t1 above the finest one's ({self.hparams.t1}), got {coarser}")
        self.partitions: list[Partition] = []

    @property
    def test_csvs(self) -> list[str]:
        test_csv = self.hparams.test_csv
        return [test_csv] if isinstance(test_csv, str) else list(test_csv)

    @property
    def partition_paths(self) -> list[Path]:
        """One file per level, coarsest first; the finest is ``partition_file`` if given."""
        hp = self.hparams
        finest = Path(hp.partition_file) if hp.partition_file else self.root / f"partition_t1-{hp.t1}_t2-{hp.t2}.csv"
        coarse = sorted(hp.coarser or [], reverse=True)
        return [self.root / f"partition_t1-{t1}_t2-{t2}.csv" for t1, t2 in coarse] + [finest]

    @property
    def partition(self) -> Partition | None:
        """The finest partition (the one predictions are made in)."""
        return self.partitions[-1] if self.partitions else None

    @property
    def num_cells(self) -> list[int]:
        """Cells per level, coarsest first."""
        return [len(p) for p in self.partitions]

    def parent_indices(self) -> list[np.ndarray]:
        """For each coarser level, the cell enclosing each finest cell (-1 where that level dropped it)."""
        return [coarse.classify(self.partition.cells) for coarse in self.partitions[:-1]]

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_geotagged(root, **options)

    def prepare_data(self) -> None:
        """Synthetic data if asked for, then the partitions of the training photos that do not exist yet."""
        super().prepare_data()
        hp = self.hparams
        thresholds = sorted(hp.coarser or [], reverse=True) + [(hp.t1, hp.t2)]
        missing = [(path, pair) for path, pair in zip(self.partition_paths, thresholds) if not path.is_file()]
        if missing:
            _, lat, lon, _ = read_geotagged_csv(self.root / hp.train_csv, tuple(hp.columns), hp.skip_bad)
            for path, (t1, t2) in missing:
                try:
                    partition = build_partition(lat, lon, t1, t2, hp.min_level, hp.max_level)
                except ValueError as error:
                    raise ValueError(f"{self.root / hp.train_csv}: {error} (data.init_args.t2)") from None
                write_partition(partition, path)
                log.info("partition of %d photos into %d cells written to %s", len(lat), len(partition), path)

    train_min_scale = 0.5  # the horizon and landmark carry the location
    eval_crop_fraction = 1.0

    def test_transform(self) -> v2.Transform:
        if self.hparams.test_crops == 5:
            # GeoEstimation: 224 crops of 256 (7/8), unless augmentation.eval_crop_fraction says otherwise
            return five_crop_transform(self.hparams.resolution, self.hparams.augmentation.crop_fraction(0.875))
        return self.eval_transform()

    def cells_of(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Each photo's cell index at every level, coarsest first (-1 outside a level's cells)."""
        leaves = cell_ids(lat, lon)
        return np.stack([partition.classify(leaves) for partition in self.partitions], axis=1)

    def shard_label(self, stored: list[float]) -> list[float] | None:
        """(lat, lon, cells...) with the cells of this run's partition; photos in no cell stay out of training."""
        lat, lon = stored[0], stored[1]
        cells = self.cells_of(np.array([lat]), np.array([lon]))[0]
        return None if cells[-1] < 0 else [lat, lon, *(float(c) for c in cells)]

    def image_path(self, image_id: str) -> Path:
        """The image file an id names (see ``image_suffix``)."""
        suffix = self.hparams.image_suffix
        if suffix is None:
            suffix = "" if has_file_allowed_extension(image_id, IMG_EXTENSIONS) else ".jpg"
        return self.root / self.hparams.image_dir / f"{image_id}{suffix}"

    def _records(self, csv_name: str) -> list[ImageRecord]:
        hp = self.hparams
        path = self.root / csv_name
        ids, lat, lon, skipped = read_geotagged_csv(path, tuple(hp.columns), hp.skip_bad)
        self.skipped += skipped
        cells = self.cells_of(lat, lon)
        records = []
        for image_id, level_cells, la, lo in zip(ids, cells, lat, lon):
            image = self.image_path(image_id)
            if not image.is_file():
                message = f"{image} ({path.name}, id {image_id}): image file not found"
                if not hp.skip_bad:
                    raise BadRecordError(message)
                self.skipped.append(message)
                continue
            label = (float(la), float(lo), *(float(c) for c in level_cells))  # lat, lon, cells coarsest first
            records.append(ImageRecord(image, label, f"{path.name}:{image_id}"))
        return records

    def read_splits(self) -> dict[str, Any]:
        self.partitions = [read_partition(path) for path in self.partition_paths]
        hp = self.hparams
        carve = not (self.root / hp.val_csv).is_file()
        if carve and hp.shards:
            raise FileNotFoundError(f"{self.root / hp.val_csv}: not found; with shards, validation needs its own CSV")
        # With shards, the training photos are streamed: neither listed nor checked file by file here.
        names = ([] if hp.shards else ["train"]) + ([] if carve else ["val"])
        splits: dict[str, Any] = {split: self._records(getattr(hp, f"{split}_csv")) for split in names}
        tests = {Path(name).stem: self._records(name) for name in self.test_csvs}
        splits["test"] = tests if len(tests) > 1 else next(iter(tests.values()))
        if carve:
            splits["train"], splits["val"] = self.split_off_validation(splits["train"])
            log.info("no %s: held out %d of %s's %d photos for validation (val_fraction %s, seed %d)",
                     self.root / hp.val_csv, len(splits["val"]), hp.train_csv,
                     len(splits["train"]) + len(splits["val"]), hp.val_fraction, hp.seed)
        outside = [r for r in splits.get("train", []) if r.label[-1] < 0]
        if outside:
            log.warning("%d training photos lie in no partition cell (dropped cells); left out of training", len(outside))
            splits["train"] = [r for r in splits["train"] if r.label[-1] >= 0]
        return splits
