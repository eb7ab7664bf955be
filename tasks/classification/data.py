"""Fine-grained classification data: Stanford Dogs in its published layout, or any ImageFolder tree.

Both readers produce the same ``ImageRecord`` list, read by the shared ``ImageDataset``, so errors name
the same things (the file and its list index) whichever layout the data came in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree

import numpy as np
import scipy.io
from torchvision.datasets.folder import IMG_EXTENSIONS

from mobilenets.tasks.classification.imagenet import ImageNetDataModule  # noqa: F401 (configs' short name)
from mobilenets.tasks.classification.synthetic import write_stanford_dogs
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, class_folder_samples, record_errors, visible_folders

__all__ = ["DogsDataModule", "read_image_folder", "read_stanford_dogs", "stanford_dogs_classes"]

STANFORD_DOGS_CLASSES = 120
MAT_KEYS = ("file_list", "annotation_list", "labels")


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
        with record_errors(skipped, skip_bad):
            if not 1 <= label <= num_classes:
                raise BadRecordError(f"{root / 'Images' / file} ({source}): label {label} outside 1..{num_classes}")
            path = root / "Images" / file
            if not path.is_file():
                raise BadRecordError(f"{path} ({source}): image file not found")
            box = _read_box(root / "Annotation" / annotation, source) if crop_to_box else None
            records.append(ImageRecord(path, label - 1, source, box))
    return records, skipped


def read_image_folder(root: str | Path) -> tuple[list[ImageRecord], list[str]]:
    """Records of an ImageFolder tree ``root/<class>/<image>`` (torchvision's listing), and its class names; a
    missing folder, one without class folders, or a class without images is an error saying so."""
    root = Path(root)
    expected = "layout imagefolder reads <root>/<class>/<image>, or <root>/train/<class>/... beside val/ (and test/)"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder not found; {expected}")
    if not visible_folders(root):
        raise BadRecordError(f"{root}: no class folders in it; {expected}")
    classes, samples = class_folder_samples(root)
    empty = sorted(set(classes) - {classes[label] for _, label in samples})
    if empty:
        raise BadRecordError(f"{root}: class folders without images ({', '.join(sorted(IMG_EXTENSIONS))}): {empty[:10]}")
    return [ImageRecord(path, label, f"{root.name}/[{i}]") for i, (path, label) in enumerate(samples)], classes


class DogsDataModule(BaseDataModule):
    """Stanford Dogs (``layout: stanford_dogs``) or any ImageFolder tree (``layout: imagefolder``).

    Args:
        root: the dataset folder (for Stanford Dogs: the one holding Images/, Annotation/, lists/).
        layout: ``stanford_dogs``, or ``imagefolder`` with ``root/train``, ``root/val`` (``root/test``)
            split folders, or a single ``root/<class>/`` tree split by ``val_fraction``.
        crop_to_box: crop each image to its annotated dog first (Stanford Dogs only).
        **kwargs: the shared data arguments (``synthetic``, ``resolution``, ``batch_size``, ``skip_bad``,
            ``val_fraction``, ...), see ``BaseDataModule``.
    """

    def __init__(
        self,
        root: str,
        layout: Literal["stanford_dogs", "imagefolder"] = "stanford_dogs",
        crop_to_box: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(root, **kwargs)
        self.class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_stanford_dogs(root, **options)

    def read_splits(self) -> dict[str, list[ImageRecord]]:
        hp = self.hparams
        if hp.layout == "stanford_dogs":
            self.class_names = stanford_dogs_classes(self.root)
            train, skipped_train = read_stanford_dogs(self.root, "train", self.num_classes, hp.crop_to_box, hp.skip_bad)
            test, skipped_test = read_stanford_dogs(self.root, "test", self.num_classes, hp.crop_to_box, hp.skip_bad)
            self.skipped = skipped_train + skipped_test
            train, val = self.split_off_validation(train)
            return {"train": train, "val": val, "test": test}
        if (self.root / "train").is_dir():
            train, self.class_names = read_image_folder(self.root / "train")
            if (self.root / "val").is_dir():
                val, val_classes = read_image_folder(self.root / "val")
                if val_classes != self.class_names:
                    raise ValueError(f"{self.root / 'val'}: classes {val_classes} differ from train's")
            else:
                train, val = self.split_off_validation(train)
            test = read_image_folder(self.root / "test")[0] if (self.root / "test").is_dir() else val
            return {"train": train, "val": val, "test": test}
        everything, self.class_names = read_image_folder(self.root)
        train, val = self.split_off_validation(everything)
        return {"train": train, "val": val, "test": val}
