"""Fine-grained classification data: Stanford Dogs in its published layout, or any ImageFolder tree.

Both readers produce the same ``ImageRecord`` list, read by one ``ClassificationDataset``, so errors name
the same things (the file and its list index) whichever layout the data came in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree

import numpy as np
import pytorch_lightning as pl
import scipy.io
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import v2

from mobilenets.backbone import check_resolution

__all__ = [
    "ClassificationDataset",
    "DogsDataModule",
    "ImageRecord",
    "eval_transform",
    "read_image",
    "read_image_folder",
    "read_stanford_dogs",
    "train_transform",
]

log = logging.getLogger(__name__)

STANFORD_DOGS_CLASSES = 120
MAT_KEYS = ("file_list", "annotation_list", "labels")


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image; ``source`` says where it was listed (for error messages)."""

    path: Path
    label: int
    source: str
    box: tuple[int, int, int, int] | None = None


class BadRecordError(ValueError):
    """A dataset record that cannot be used; the message names the file and the record."""


def read_image(path: Path, source: str) -> torch.Tensor:
    """Decode an image as an RGB uint8 (C, H, W) tensor, or raise naming the file and where it was listed."""
    try:
        with Image.open(path) as image:
            return v2.functional.pil_to_tensor(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise BadRecordError(f"{path} ({source}): unreadable image: {error}") from None


def _mat_strings(column: np.ndarray) -> list[str]:
    """Strings out of a MATLAB N x 1 cell array as scipy loads it (each cell an array holding one string)."""
    strings = []
    for cell in np.asarray(column, dtype=object).ravel():
        while isinstance(cell, np.ndarray):
            cell = cell.ravel()[0]
        strings.append(str(cell))
    return strings


def _load_list(path: Path) -> tuple[list[str], list[str], list[int]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Stanford Dogs list file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as error:  # scipy raises several types for a corrupt .mat
        raise BadRecordError(f"{path}: cannot read MATLAB file: {error}") from None
    missing = [key for key in MAT_KEYS if key not in mat]
    if missing:
        raise BadRecordError(f"{path}: missing keys {missing}; a Stanford Dogs list has {list(MAT_KEYS)}")
    files, annotations = _mat_strings(mat["file_list"]), _mat_strings(mat["annotation_list"])
    labels = np.asarray(mat["labels"]).ravel()
    if not len(files) == len(annotations) == len(labels):
        raise BadRecordError(
            f"{path}: file_list ({len(files)}), annotation_list ({len(annotations)}) and labels ({len(labels)}) differ"
        )
    return files, annotations, [int(label) for label in labels]


def _read_box(path: Path, source: str) -> tuple[int, int, int, int]:
    """The first object's bounding box of a Stanford Dogs (VOC-style) annotation file."""
    try:
        bndbox = ElementTree.parse(path).getroot().find("object/bndbox")
        box = tuple(int(float(bndbox.find(tag).text)) for tag in ("xmin", "ymin", "xmax", "ymax"))
    except (OSError, ElementTree.ParseError, AttributeError, TypeError, ValueError) as error:
        raise BadRecordError(f"{path} ({source}): unreadable annotation: {error}") from None
    if box[2] <= box[0] or box[3] <= box[1]:
        raise BadRecordError(f"{path} ({source}): degenerate box {box}")
    return box


def stanford_dogs_classes(root: Path) -> list[str]:
    """Breed names in label order, from ``file_list.mat`` (``n02085620-Chihuahua`` -> ``Chihuahua``)."""
    list_path = root / "lists" / "file_list.mat"
    files, _, labels = _load_list(list_path)
    folders: dict[int, str] = {}
    for index, (file, label) in enumerate(zip(files, labels)):
        folder = file.split("/")[0]
        if folders.setdefault(label, folder) != folder:
            raise BadRecordError(f"{list_path}[{index}]: label {label} used for both {folders[label]} and {folder}")
    if sorted(folders) != list(range(1, len(folders) + 1)) or len(folders) > STANFORD_DOGS_CLASSES:
        raise BadRecordError(
            f"{list_path}: labels must be 1..N (N <= {STANFORD_DOGS_CLASSES}) without gaps, found {sorted(folders)}"
        )
    return [folders[label].split("-", 1)[-1] for label in sorted(folders)]


def read_stanford_dogs(
    root: str | Path, split: Literal["train", "test"], num_classes: int, crop_to_box: bool = False,
    skip_bad: bool = False,
) -> tuple[list[ImageRecord], list[str]]:
    """Records of ``lists/<split>_list.mat`` (labels made 0-based), and the skipped records' messages."""
    root = Path(root)
    list_path = root / "lists" / f"{split}_list.mat"
    files, annotations, labels = _load_list(list_path)
    records, skipped = [], []
    for index, (file, annotation, label) in enumerate(zip(files, annotations, labels)):
        source = f"{list_path.name}[{index}]"
        try:
            if not 1 <= label <= num_classes:
                raise BadRecordError(f"{root / 'Images' / file} ({source}): label {label} outside 1..{num_classes}")
            path = root / "Images" / file
            if not path.is_file():
                raise BadRecordError(f"{path} ({source}): image file not found")
            box = _read_box(root / "Annotation" / annotation, source) if crop_to_box else None
            records.append(ImageRecord(path, label - 1, source, box))
        except BadRecordError as error:
            if not skip_bad:
                raise
            skipped.append(str(error))
    return records, skipped


def read_image_folder(root: str | Path) -> tuple[list[ImageRecord], list[str]]:
    """Records of an ImageFolder tree ``root/<class>/<image>`` (torchvision's listing), and its class names."""
    root = Path(root)
    classes, class_to_idx = find_classes(str(root))
    samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    return [ImageRecord(Path(path), label, f"{root.name}/[{i}]") for i, (path, label) in enumerate(samples)], classes


def train_transform(resolution: int) -> v2.Transform:
    """Light augmentation, as the paper advises for small models: random resized crop and flip."""
    return v2.Compose([
        v2.RandomResizedCrop(resolution, scale=(0.25, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToDtype(torch.float32, scale=True),
    ])


def eval_transform(resolution: int, crop_fraction: float = 0.875) -> v2.Transform:
    """Resize the short side to resolution / crop_fraction, then the central resolution x resolution."""
    return v2.Compose([
        v2.Resize(round(resolution / crop_fraction), antialias=True),
        v2.CenterCrop(resolution),
        v2.ToDtype(torch.float32, scale=True),
    ])


class ClassificationDataset(Dataset):
    """Images in [0, 1] with their labels: ``{"image", "label", "file"}``; normalisation is the model's."""

    def __init__(self, records: list[ImageRecord], transform: v2.Transform | None = None) -> None:
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        image = read_image(record.path, record.source)
        if record.box is not None:
            x0, y0, x1, y1 = record.box
            image = image[:, y0:y1, x0:x1]
        image = tv_tensors.Image(image)
        if self.transform is not None:
            image = self.transform(image)
        return {"image": image.as_subclass(torch.Tensor), "label": record.label, "file": str(record.path)}


def drop_unreadable(records: list[ImageRecord]) -> tuple[list[ImageRecord], list[str]]:
    """Decode every image once; keep the readable ones (for ``skip_bad``: bad files counted, not crashed on)."""
    kept, skipped = [], []
    for record in records:
        try:
            read_image(record.path, record.source)
            kept.append(record)
        except BadRecordError as error:
            skipped.append(str(error))
    return kept, skipped


class DogsDataModule(pl.LightningDataModule):
    """Stanford Dogs (``layout: stanford_dogs``) or any ImageFolder tree (``layout: imagefolder``).

    Args:
        root: the dataset folder (for Stanford Dogs: the one holding Images/, Annotation/, lists/).
        synthetic: write the built-in synthetic Stanford Dogs into ``root`` first if it is empty.
        synthetic_options: arguments for ``write_stanford_dogs`` (num_classes, train_per_class, ...).
        layout: ``stanford_dogs``, or ``imagefolder`` with ``root/train``, ``root/val`` (``root/test``)
            split folders, or a single ``root/<class>/`` tree split by ``val_fraction``.
        resolution: training and evaluation input size.
        val_fraction: part of the training list held out for validation (seeded, stratified by nothing).
        crop_to_box: crop each image to its annotated dog first (Stanford Dogs only).
        skip_bad: skip, count and log bad records (missing files, bad labels, unreadable images; every
            image is decoded once at setup to find them) instead of raising.
        predict_dir: images to predict (any folder tree); the test split if not given.
    """

    def __init__(
        self,
        root: str,
        synthetic: bool = False,
        synthetic_options: dict | None = None,
        layout: Literal["stanford_dogs", "imagefolder"] = "stanford_dogs",
        resolution: int = 224,
        batch_size: int = 32,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        seed: int = 0,
        crop_to_box: bool = False,
        skip_bad: bool = False,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__()
        check_resolution(resolution)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.root = Path(root)
        self.class_names: list[str] = []
        self.skipped: list[str] = []
        self.datasets: dict[str, ClassificationDataset] = {}

    def prepare_data(self) -> None:
        """Write the synthetic dataset once, if asked for and the root is empty (rank 0 only)."""
        if self.hparams.synthetic and not (self.root.exists() and any(self.root.iterdir())):
            from mobilenets.tasks.classification.synthetic import write_stanford_dogs

            log.info("writing synthetic Stanford Dogs to %s", self.root)
            write_stanford_dogs(self.root, **(self.hparams.synthetic_options or {}))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _split(self, records: list[ImageRecord]) -> tuple[list[ImageRecord], list[ImageRecord]]:
        order = np.random.default_rng(self.hparams.seed).permutation(len(records))
        n_val = int(round(len(records) * self.hparams.val_fraction))
        return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]

    def _read(self) -> dict[str, list[ImageRecord]]:
        hp = self.hparams
        if hp.layout == "stanford_dogs":
            self.class_names = stanford_dogs_classes(self.root)
            train, skipped_train = read_stanford_dogs(self.root, "train", self.num_classes, hp.crop_to_box, hp.skip_bad)
            test, skipped_test = read_stanford_dogs(self.root, "test", self.num_classes, hp.crop_to_box, hp.skip_bad)
            self.skipped = skipped_train + skipped_test
            train, val = self._split(train)
            return {"train": train, "val": val, "test": test}
        if (self.root / "train").is_dir():
            train, self.class_names = read_image_folder(self.root / "train")
            if (self.root / "val").is_dir():
                val, val_classes = read_image_folder(self.root / "val")
                if val_classes != self.class_names:
                    raise ValueError(f"{self.root / 'val'}: classes {val_classes} differ from train's")
            else:
                train, val = self._split(train)
            test = read_image_folder(self.root / "test")[0] if (self.root / "test").is_dir() else val
            return {"train": train, "val": val, "test": test}
        everything, self.class_names = read_image_folder(self.root)
        train, val = self._split(everything)
        return {"train": train, "val": val, "test": val}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        splits = self._read()
        if self.hparams.skip_bad:
            for name in list(splits):
                splits[name], skipped = drop_unreadable(splits[name])
                self.skipped += skipped
            if self.skipped:
                log.warning("skip_bad: skipped %d bad records, e.g. %s", len(self.skipped), self.skipped[:3])
        resolution = self.hparams.resolution
        self.datasets = {
            "train": ClassificationDataset(splits["train"], train_transform(resolution)),
            "val": ClassificationDataset(splits["val"], eval_transform(resolution)),
            "test": ClassificationDataset(splits["test"], eval_transform(resolution)),
        }
        if self.hparams.predict_dir:
            records = [ImageRecord(Path(p), -1, f"predict_dir[{i}]") for i, p in
                       enumerate(sorted(p for p in Path(self.hparams.predict_dir).rglob("*")
                                        if p.suffix.lower() in IMG_EXTENSIONS))]
            self.datasets["predict"] = ClassificationDataset(records, eval_transform(resolution))
        else:
            self.datasets["predict"] = self.datasets["test"]

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
            drop_last=shuffle and len(self.datasets[split]) > self.hparams.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
