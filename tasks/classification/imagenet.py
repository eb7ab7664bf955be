"""ILSVRC-2012 (ImageNet-1k) as distributed, for training the MobileNet family's ImageNet weights.

Layouts read (the training images are always ``train/<wnid>/*.JPEG``):

- validation in class folders, ``val/<wnid>/*.JPEG`` (torchvision's ``ImageNet`` after its preparation, timm);
- Kaggle's ``imagenet-object-localization-challenge``: ``ILSVRC/Data/CLS-LOC/{train,val}`` with a flat ``val/``
  labelled by ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the string is ``wnid x0 y0 x1 y1`` per box);
- the ILSVRC-2012 devkit: a flat ``val/`` of ``ILSVRC2012_val_%08d.JPEG`` labelled line by line by
  ``data/ILSVRC2012_validation_ground_truth.txt`` in the devkit's ILSVRC2012_ID numbering, mapped to WordNet ids by
  ``data/meta.mat`` (the leaf synsets, ``num_children == 0``).

Class index = position in the sorted WordNet ids (torchvision's and timm's order), so 1000-way heads line up with
converted TensorFlow weights (whose background class is dropped). The test split is the validation set: the test
set's labels were never published.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import scipy.io

from mobilenets.core.io import read_text
from mobilenets.tasks.classification.synthetic import write_imagenet
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, image_files, record_errors, visible_folders

__all__ = ["ImageNetDataModule", "find_imagenet", "read_devkit_val_labels", "read_imagenet",
           "read_kaggle_val_labels"]

KAGGLE_IMAGES = Path("ILSVRC") / "Data" / "CLS-LOC"
KAGGLE_VAL_LABELS = "LOC_val_solution.csv"
DEVKIT = "ILSVRC2012_devkit_t12"
DEVKIT_GROUND_TRUTH = Path("data") / "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = Path("data") / "meta.mat"


def read_kaggle_val_labels(path: str | Path) -> dict[str, str]:
    """{ImageId: wnid} from Kaggle's ``LOC_val_solution.csv``; an image's class is its first box's wnid."""
    path = Path(path)
    labels: dict[str, str] = {}
    with io.StringIO(read_text(path), newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header != ["ImageId", "PredictionString"]:
            raise BadRecordError(f"{path}: expected the header 'ImageId,PredictionString', found {header}")
        for line, row in enumerate(reader, start=2):
            tokens = row[1].split() if len(row) == 2 else []
            if not tokens or not tokens[0].startswith("n"):
                raise BadRecordError(f"{path}, line {line}: expected 'ImageId,wnid x0 y0 x1 y1 ...', found {row}")
            labels[row[0]] = tokens[0]
    return labels


def read_devkit_val_labels(devkit: str | Path) -> list[str]:
    """The wnid of each validation image in file order (``ILSVRC2012_val_00000001.JPEG`` first), from the devkit's
    ground-truth file (ILSVRC2012_IDs) and ``meta.mat`` (ID -> wnid for the 1000 leaf synsets)."""
    devkit = Path(devkit)
    meta_path, truth_path = devkit / DEVKIT_META, devkit / DEVKIT_GROUND_TRUTH
    for path in (meta_path, truth_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; val_labels must name the extracted {DEVKIT} folder")
    try:
        synsets = scipy.io.loadmat(str(meta_path), squeeze_me=True)["synsets"]
        wnid_of = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    except (KeyError, ValueError, TypeError, IndexError) as error:
        raise BadRecordError(f"{meta_path}: not the devkit's synsets table ({error})") from None
    wnids = []
    for line, text in enumerate(read_text(truth_path).split(), start=1):
        if not text.isdigit() or int(text) not in wnid_of:
            raise BadRecordError(f"{truth_path}, line {line}: {text!r} is not a leaf ILSVRC2012_ID of {meta_path.name}")
        wnids.append(wnid_of[int(text)])
    return wnids


def find_imagenet(root: str | Path, val_labels: str | Path | None = None) -> tuple[Path, Path | None]:
    """(the folder holding ``train/`` and ``val/``, the validation labels' file or devkit, or None for class
    folders), looking where each distribution puts them when ``val_labels`` is not given."""
    root = Path(root)
    images = root / KAGGLE_IMAGES if (root / KAGGLE_IMAGES / "train").is_dir() else root
    if not (images / "train").is_dir():
        raise FileNotFoundError(f"{root}: no train/ folder (nor {KAGGLE_IMAGES}/train); root must be the ImageNet "
                                f"folder holding train/<wnid>/ and val/")
    if val_labels is not None:
        return images, Path(val_labels)
    val = images / "val"
    if not val.is_dir() or visible_folders(val):
        return images, None  # class folders (or no validation set)
    for folder in [images, *list(images.parents)[:3]]:
        if (folder / KAGGLE_VAL_LABELS).is_file():
            return images, folder / KAGGLE_VAL_LABELS
        if (folder / DEVKIT / DEVKIT_GROUND_TRUTH).is_file():
            return images, folder / DEVKIT
    raise FileNotFoundError(f"{val}: the validation images are not in class folders and neither {KAGGLE_VAL_LABELS} "
                            f"nor {DEVKIT}/ was found beside them; set val_labels to one of them")


def read_imagenet(
    root: str | Path, val_labels: str | Path | None = None, skip_bad: bool = False
) -> tuple[dict[str, list[ImageRecord]], list[str], list[str]]:
    """({"train", "val"} records, the sorted wnids (class index order), the skipped records' messages)."""
    images, labels_source = find_imagenet(root, val_labels)
    wnids = visible_folders(images / "train")
    index_of = {wnid: index for index, wnid in enumerate(wnids)}
    skipped: list[str] = []
    train = [ImageRecord(path, index_of[wnid], f"train/{wnid}")
             for wnid in wnids for path in image_files(images / "train" / wnid, recursive=False)]
    val: list[ImageRecord] = []
    if labels_source is None:
        if (images / "val").is_dir():
            val_wnids = visible_folders(images / "val")
            unknown = sorted(set(val_wnids) - set(index_of))
            if unknown:
                raise BadRecordError(f"{images / 'val'}: class folders {unknown[:5]} are not among train/'s classes")
            val = [ImageRecord(path, index_of[wnid], f"val/{wnid}")
                   for wnid in val_wnids for path in image_files(images / "val" / wnid, recursive=False)]
        return {"train": train, "val": val}, wnids, skipped
    files = image_files(images / "val", recursive=False)
    if labels_source.suffix == ".csv":
        listed, source = read_kaggle_val_labels(labels_source), labels_source.name
        expected = {f"{image_id}.JPEG": wnid for image_id, wnid in listed.items()}
        unlabelled = [path for path in files if path.stem not in listed]
    else:
        source = str(DEVKIT_GROUND_TRUTH)
        expected = {f"ILSVRC2012_val_{n:08d}.JPEG": wnid
                    for n, wnid in enumerate(read_devkit_val_labels(labels_source), start=1)}
        unlabelled = [path for path in files if path.name not in expected]
    for path in unlabelled:
        with record_errors(skipped, skip_bad):
            raise BadRecordError(f"{path}: the image has no label in {labels_source}")
    for name, wnid in sorted(expected.items()):
        path = images / "val" / name
        with record_errors(skipped, skip_bad):
            if wnid not in index_of:
                raise BadRecordError(f"{path} ({source}): class {wnid} has no train/{wnid}/ folder")
            if not path.is_file():
                raise BadRecordError(f"{path} ({source}): image file not found")
            val.append(ImageRecord(path, index_of[wnid], source))
    return {"train": train, "val": val}, wnids, skipped


class ImageNetDataModule(BaseDataModule):
    """ILSVRC-2012 in any of its distributed layouts (see the module docstring); test = val.

    Args:
        root: the ImageNet folder: the one holding ``train/`` and ``val/``, or Kaggle's download (holding
            ``ILSVRC/`` and ``LOC_val_solution.csv``).
        val_labels: ``LOC_val_solution.csv`` or the ``ILSVRC2012_devkit_t12`` folder, for a flat ``val/``;
            found beside the images when not given.
        **kwargs: the shared data arguments (``synthetic``, ``resolution``, ``batch_size``, ``skip_bad``,
            ``shards``, ``augmentation`` ...), see ``BaseDataModule``. The training crop's area shares default to
            Inception's (0.08, 1); the paper gives small models fewer distortions, so the per-size configs raise
            ``augmentation.crop_scale``.
    """

    train_min_scale = 0.08

    def __init__(self, root: str, val_labels: str | None = None, **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        self.class_names: list[str] = []

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_imagenet(root, **options)

    def read_splits(self) -> dict[str, list[ImageRecord]]:
        hp = self.hparams
        splits, self.class_names, self.skipped = read_imagenet(self.root, hp.val_labels, hp.skip_bad)
        if not splits["val"]:
            raise FileNotFoundError(f"{self.root}: no validation images (val/ is missing or empty)")
        return {**splits, "test": splits["val"]}

