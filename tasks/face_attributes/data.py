"""Face attribute data: the CelebA layout (read directly, not through torchvision's CelebA, which rejects
files whose checksums differ) or a generic multi-label CSV.

Labels are int8 vectors: 1 positive, 0 negative, -1 unknown (masked out of loss and metrics). In CelebA's
text files 1 / -1 are positive / negative and 0 is unknown; in a CSV, 1 is positive, 0 or -1 negative and an
empty cell unknown.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mobilenets.core.io import read_text
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.faces.alignment import AlignedFaces, Alignment, AlignsFaces
from mobilenets.tasks.face_attributes.synthetic import write_celeba
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, record_errors

__all__ = ["CelebADataModule", "read_celeba_attributes", "read_celeba_partition", "read_attribute_csv"]

UNKNOWN = -1
SPLITS = {"0": "train", "1": "val", "2": "test"}


def read_celeba_attributes(
    path: Path, skip_bad: bool = False
) -> tuple[list[str], dict[str, tuple[int, np.ndarray]], list[str]]:
    """Parse ``list_attr_celeba.txt``: attribute names, {file: (line number, labels)}, skipped-line messages."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CelebA attribute file not found")
    lines = read_text(path).splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise BadRecordError(f"{path}:1: expected the image count, then the attribute names")
    names = lines[1].split()
    records: dict[str, tuple[int, np.ndarray]] = {}
    skipped = []
    for line_number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        with record_errors(skipped, skip_bad):
            if len(fields) != len(names) + 1:
                raise BadRecordError(
                    f"{path}:{line_number}: {fields[0]}: expected {len(names)} values, got {len(fields) - 1}"
                )
            if any(value not in ("-1", "0", "1") for value in fields[1:]):
                bad = next(value for value in fields[1:] if value not in ("-1", "0", "1"))
                raise BadRecordError(f"{path}:{line_number}: {fields[0]}: value {bad!r} is not -1, 0 or 1")
            values = np.array([int(value) for value in fields[1:]], dtype=np.int8)
            # CelebA: 1 yes, -1 no, 0 unknown -> ours: 1 yes, 0 no, -1 unknown
            records[fields[0]] = (line_number, np.select([values == 1, values == -1], [1, 0], UNKNOWN).astype(np.int8))
    declared = int(lines[0])
    if declared != len(records) + len(skipped):
        raise BadRecordError(f"{path}:1: declares {declared} images but lists {len(records) + len(skipped)}")
    return names, records, skipped


def read_celeba_partition(path: Path) -> list[tuple[int, str, str]]:
    """Parse ``list_eval_partition.txt`` into (line number, file, split name)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CelebA partition file not found")
    entries = []
    for line_number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in SPLITS:
            raise BadRecordError(f"{path}:{line_number}: expected '<file> <0|1|2>', got {line!r}")
        entries.append((line_number, fields[0], SPLITS[fields[1]]))
    if not entries:
        raise BadRecordError(f"{path}: lists no images; expected lines '<file> <0|1|2>' (train, val, test)")
    return entries


def read_celeba_boxes(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """Parse ``list_bbox_celeba.txt`` into {file: (x0, y0, x1, y1)}."""
    boxes = {}
    for line_number, line in enumerate(read_text(path).splitlines()[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 5:
            raise BadRecordError(f"{path}:{line_number}: expected '<file> x_1 y_1 width height', got {line!r}")
        x, y, w, h = (int(v) for v in fields[1:])
        if w <= 0 or h <= 0:
            raise BadRecordError(f"{path}:{line_number}: {fields[0]}: degenerate box {w}x{h}")
        boxes[fields[0]] = (x, y, x + w, y + h)
    return boxes


def read_attribute_csv(path: Path, image_root: Path, skip_bad: bool = False
                       ) -> tuple[list[str], list[ImageRecord], list[str]]:
    """A ``file,attr1,attr2,...`` CSV (1 yes; 0 or -1 no; empty unknown): names, records, skipped messages."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: attribute CSV not found")
    with io.StringIO(read_text(path), newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or header[0] != "file":
            raise BadRecordError(f"{path}:1: the header must be 'file,<attribute>,...'")
        names, records, skipped = header[1:], [], []
        for line_number, row in enumerate(reader, start=2):
            with record_errors(skipped, skip_bad):
                if len(row) != len(header):
                    raise BadRecordError(f"{path}:{line_number}: expected {len(header)} fields, got {len(row)}")
                labels = []
                for value in row[1:]:
                    value = value.strip()
                    if value not in ("1", "0", "-1", ""):
                        raise BadRecordError(f"{path}:{line_number}: {row[0]}: value {value!r} is not 1, 0, -1 or empty")
                    labels.append(UNKNOWN if value == "" else int(value == "1"))
                image = image_root / row[0]
                if not image.is_file():
                    raise BadRecordError(f"{image} ({path.name}:{line_number}): image file not found")
                records.append(ImageRecord(image, np.array(labels, dtype=np.int8), f"{path.name}:{line_number}"))
    return names, records, skipped


class CelebADataModule(AlignsFaces, BaseDataModule):
    """CelebA-format face attributes (``layout: celeba``) or multi-label CSVs (``layout: csv``).

    Args:
        root: for CelebA, the folder holding ``list_attr_celeba.txt``, ``list_eval_partition.txt`` and
            ``img_align_celeba/`` (torchvision's ``root/celeba/`` placement is found too); for CSV, the
            folder holding ``train.csv``, ``val.csv`` (optional: split off ``train`` by ``val_fraction``),
            ``test.csv`` (optional: the val set), with image paths relative to it.
        layout: ``celeba`` or ``csv``.
        attributes: the attributes to learn, by name (default: all, in file order).
        crop_to_box: crop faces with ``list_bbox_celeba.txt`` (CelebA only).
        image_dir: CelebA's image folder under the root: ``img_align_celeba`` (its aligned crops) or
            ``img_celeba`` (its in-the-wild photos, for ``align: true`` or ``crop_to_box``); the same file names.
        align: read every image as its aligned face crop, found by MTCNN and cut as ``alignment`` says
            (``mobilenets.tasks.faces.alignment``), cached under ``root/.aligned/`` and made again when a source
            file changes; for photos that are not face crops (CelebA's in-the-wild ``img_celeba/``, your own). An
            image without a face is an error naming it, or with ``skip_bad`` is left out and counted.
        alignment: the crop: ``size``, ``margin``, ``method`` (``similarity`` or ``box``), ``min_face_size``.
        **kwargs: the shared data arguments, see ``BaseDataModule``.
    """

    def __init__(
        self,
        root: str,
        layout: Literal["celeba", "csv"] = "celeba",
        attributes: list[str] | None = None,
        crop_to_box: bool = False,
        image_dir: str = "img_align_celeba",
        align: bool = False,
        alignment: Alignment | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        if align and crop_to_box:
            raise ValueError("align and crop_to_box both choose the face crop: set one of them")
        self.aligned_faces = AlignedFaces(self.root, Alignment.of(alignment)) if align else None
        self.attribute_names: list[str] = []

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_celeba(root, **options)

    # Milder crops than for objects: a hat or a beard must stay in the picture for its label to hold.
    train_min_scale = 0.6
    eval_crop_fraction = 1.0

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_names)

    def _select(self, names: list[str], splits: dict[str, list[ImageRecord]]) -> dict[str, list[ImageRecord]]:
        wanted = self.hparams.attributes or names
        missing = [name for name in wanted if name not in names]
        if missing:
            raise ValueError(f"{self.root}: attributes {missing} not in the data, which has {names}")
        columns = [names.index(name) for name in wanted]
        self.attribute_names = list(wanted)
        return {
            split: [ImageRecord(r.path, r.label[columns], r.source, r.box) for r in records]
            for split, records in splits.items()
        }

    def label_counts(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """Positives and negatives per attribute in a split (unknowns not counted)."""
        labels = np.stack([record.label for record in self.datasets[split].records])
        return (labels == 1).sum(axis=0), (labels == 0).sum(axis=0)

    def read_splits(self) -> dict[str, list[ImageRecord]]:
        if self.hparams.layout == "csv":
            return self._read_csv()
        root = self.root / "celeba" if (self.root / "celeba" / "list_attr_celeba.txt").is_file() else self.root
        attr_path = root / "list_attr_celeba.txt"
        names, attributes, self.skipped = read_celeba_attributes(attr_path, self.hparams.skip_bad)
        boxes = read_celeba_boxes(root / "list_bbox_celeba.txt") if self.hparams.crop_to_box else {}
        partition_path = root / "list_eval_partition.txt"
        splits: dict[str, list[ImageRecord]] = {"train": [], "val": [], "test": []}
        for line_number, file, split in read_celeba_partition(partition_path):
            source = f"{partition_path.name}:{line_number}"
            with record_errors(self.skipped, self.hparams.skip_bad):
                if file not in attributes:
                    raise BadRecordError(f"{partition_path}:{line_number}: {file} is not in {attr_path.name}")
                image = root / self.hparams.image_dir / file
                if not image.is_file():
                    raise BadRecordError(f"{image} ({source}): image file not found")
                if self.hparams.crop_to_box and file not in boxes:
                    raise BadRecordError(f"{image} ({source}): no box in list_bbox_celeba.txt")
                splits[split].append(ImageRecord(image, attributes[file][1], source, boxes.get(file)))
        return self._select(names, splits)

    def _read_csv(self) -> dict[str, list[ImageRecord]]:
        names, train, self.skipped = read_attribute_csv(self.root / "train.csv", self.root, self.hparams.skip_bad)
        splits = {"train": train}
        for split in ("val", "test"):
            path = self.root / f"{split}.csv"
            if path.is_file():
                split_names, splits[split], skipped = read_attribute_csv(path, self.root, self.hparams.skip_bad)
                self.skipped += skipped
                if split_names != names:
                    raise ValueError(f"{path}: attributes {split_names} differ from train.csv's {names}")
        if "val" not in splits:
            splits["train"], splits["val"] = self.split_off_validation(train)
        splits.setdefault("test", splits["val"])
        return self._select(names, splits)
