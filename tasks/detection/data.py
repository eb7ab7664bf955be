"""COCO-format detection data (and Pascal VOC's layout, read into the same form), augmented the SSD way with
transforms.v2.

Category ids (COCO's 1..90 with gaps) map to contiguous labels 1..K (0 is SSD's background) and back in
every output. Crowd annotations never become training targets: they travel as ``crowd_boxes``, regions whose
anchors are neither objects nor background in the loss; evaluation leaves them to pycocotools, which ignores
them too. Images without annotations are kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from mobilenets.core.io import read_text
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.data.datamodule import BaseDataModule
from mobilenets.tasks.detection.metrics import voc07_map50
from mobilenets.tasks.detection.synthetic import write_coco, write_voc
from mobilenets.tasks.detection.voc import read_voc
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, read_image, record_errors

__all__ = ["CocoDataModule", "CocoDetectionDataset", "VOCDataModule", "collate_detection", "load_coco",
           "ssd_augmentation"]

log = logging.getLogger(__name__)
# A box may overhang its image by this many pixels (annotation tools round); beyond it is an error.
EDGE_TOLERANCE = 1.0


def load_coco(path: Path) -> COCO:
    """Load an instances JSON into pycocotools, with an error naming the file if it is malformed."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: COCO annotation file not found")
    try:
        dataset = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise BadRecordError(f"{path}: malformed JSON: {error}") from None
    missing = [key for key in ("images", "annotations", "categories") if key not in dataset]
    if missing:
        raise BadRecordError(f"{path}: not a COCO instances file, missing {missing}")
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def validate_coco(coco: COCO, path: Path, image_dir: Path, skip_bad: bool) -> list[str]:
    """Check every annotation and image (with ``skip_bad``, decode every image too); drop bad ones from ``coco``
    when ``skip_bad``, else raise."""
    skipped, bad_annotations, bad_images = [], set(), set()
    for image_id, image in coco.imgs.items():
        file, source = image_dir / image["file_name"], f"image id {image_id} in {path.name}"
        if not file.is_file():
            message = f"{file} ({source}): image file not found"
            if not skip_bad:
                raise BadRecordError(message)
            skipped.append(message)
            bad_images.add(image_id)
        elif skip_bad:  # opted in: decode once now, so an unreadable image is skipped rather than met mid-epoch
            with record_errors(skipped, skip_bad=True):
                bad_images.add(image_id)  # until it decodes
                read_image(file, source)
                bad_images.discard(image_id)
    for annotation_id, annotation in coco.anns.items():
        where = f"{path}: annotation id {annotation_id}"
        image = coco.imgs.get(annotation["image_id"])
        problem = None
        if image is None:
            problem = f"{where} refers to missing image id {annotation['image_id']}"
        elif annotation["category_id"] not in coco.cats:
            problem = f"{where} has unknown category id {annotation['category_id']}"
        else:
            x, y, w, h = annotation["bbox"]
            if not (w > 0 and h > 0):
                problem = f"{where} (image {image['file_name']}): degenerate box {annotation['bbox']}"
            elif x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + w > image["width"] + EDGE_TOLERANCE \
                    or y + h > image["height"] + EDGE_TOLERANCE:
                problem = f"{where} (image {image['file_name']}): box {annotation['bbox']} outside the " \
                          f"{image['width']}x{image['height']} image"
        if problem:
            if not skip_bad:
                raise BadRecordError(problem)
            skipped.append(problem)
            bad_annotations.add(annotation_id)
    if bad_annotations or bad_images:
        dataset = coco.dataset
        dataset["images"] = [i for i in dataset["images"] if i["id"] not in bad_images]
        dataset["annotations"] = [a for a in dataset["annotations"]
                                  if a["id"] not in bad_annotations and a["image_id"] not in bad_images]
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    return skipped


class CocoDetectionDataset(Dataset):
    """``{"image", "target": {"boxes" (xyxy), "labels"}, "image_id", "file"}`` per COCO image."""

    def __init__(self, coco: COCO, image_dir: Path, label_of: dict[int, int], transform: v2.Transform,
                 source: str) -> None:
        self.coco, self.image_dir, self.label_of, self.transform = coco, image_dir, label_of, transform
        self.image_ids = sorted(coco.imgs)
        self.source = source

    def __len__(self) -> int:
        return len(self.image_ids)

    def split(self, keep: list[int]) -> tuple[CocoDetectionDataset, list[ImageRecord]]:
        """The images at positions ``keep`` as a dataset, and the others as unlabeled image records."""
        subset = CocoDetectionDataset(self.coco, self.image_dir, self.label_of, self.transform, self.source)
        subset.image_ids = [self.image_ids[i] for i in keep]
        kept = set(subset.image_ids)
        dropped = [ImageRecord(self.image_dir / self.coco.imgs[i]["file_name"], -1, f"image id {i} in {self.source}")
                   for i in self.image_ids if i not in kept]
        return subset, dropped

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        path = self.image_dir / info["file_name"]
        image = tv_tensors.Image(read_image(path, f"image id {image_id} in {self.source}"))
        annotations = self.coco.imgToAnns.get(image_id, [])
        boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=image.shape[-2:]),
            "labels": torch.tensor([self.label_of[a["category_id"]] for a in annotations], dtype=torch.int64),
            "iscrowd": torch.tensor([bool(a.get("iscrowd", 0)) for a in annotations], dtype=torch.bool),
        }
        image, target = self.transform(image, target)
        crowd, boxes = target.pop("iscrowd"), target["boxes"].clamp(min=0).as_subclass(torch.Tensor)
        target = {"boxes": boxes[~crowd], "labels": target["labels"][~crowd], "crowd_boxes": boxes[crowd]}
        return {"image": image.as_subclass(torch.Tensor), "target": target, "image_id": image_id, "file": str(path),
                "index": index}


class ImageFolderForDetection(Dataset):
    """Images of a folder for ``predict``: no targets, ids by position."""

    def __init__(self, records: list, transform: v2.Transform) -> None:
        self.records, self.transform = records, transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = self.transform(tv_tensors.Image(read_image(record.path, record.source)))
        return {"image": image.as_subclass(torch.Tensor), "target": None, "image_id": index, "file": str(record.path),
                "index": index}


def _labels_and_crowd(inputs: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """What ``SanitizeBoundingBoxes`` drops together with a box (called with ``(image, target)``): its label and
    its crowd flag."""
    target = inputs[1]
    return target["labels"], target["iscrowd"]


def ssd_augmentation(kind: str, hflip: bool = True) -> v2.Transform:
    """SSD's training augmentation, boxes following the image: ``ssd`` (photometric distortion, zoom out, IoU
    crop, flip: torchvision's ``ssd`` preset), ``ssdlite`` (IoU crop and flip: its ``ssdlite`` preset) or
    ``light`` (photometric distortion and flip); ``hflip`` false leaves the flip out."""
    if kind not in ("ssd", "ssdlite", "light"):
        raise ValueError(f"augment must be 'ssd', 'ssdlite' or 'light', got {kind!r}")
    photometric = [v2.RandomPhotometricDistort(p=0.5)] if kind in ("ssd", "light") else []
    zoom_out = [v2.RandomZoomOut(fill={tv_tensors.Image: (124, 116, 104), "others": 0}, side_range=(1.0, 2.0),
                                 p=0.5)] if kind == "ssd" else []
    crop = [v2.RandomIoUCrop()] if kind in ("ssd", "ssdlite") else []
    return v2.Compose([
        *photometric, *zoom_out, *crop,
        *([v2.RandomHorizontalFlip()] if hflip else []),
        v2.SanitizeBoundingBoxes(labels_getter=_labels_and_crowd),  # drops boxes a crop made degenerate
        v2.ToDtype(torch.float32, scale=True),
    ])


def collate_detection(samples: list[dict[str, Any]]) -> dict[str, list]:
    """Images differ in size and targets in length: keep each field as a list (torchvision detection's input)."""
    return {key: [sample[key] for sample in samples] for key in samples[0]}


class CocoDataModule(BaseDataModule):
    """A COCO-format dataset: ``<root>/annotations/instances_<split>.json`` and images in ``<root>/<split>/``.

    Args:
        root: the dataset folder (COCO 2017's layout, or any dataset laid out the same way).
        train_split: the training split's name (``train2017``).
        val_split: the validation split's name (``val2017``).
        test_split: the test split's name; the validation split if not given.
        augment: ``ssd`` (photometric distortion, zoom out, IoU crop, flip: SSD's recipe for long runs),
            ``ssdlite`` (IoU crop and flip: torchvision's SSDLite recipe) or ``light`` (photometric distortion and
            flip: for short runs, such as the demo's).
        **kwargs: the shared data arguments, see ``BaseDataModule`` (``resolution`` is the SSD input size). Of
            ``augmentation``, only ``hflip`` applies: ``augment`` chooses the crops, and evaluation keeps the
            whole image.
    """

    collate_fn = staticmethod(collate_detection)

    def __init__(self, root: str, train_split: str = "train2017", val_split: str = "val2017",
                 test_split: str | None = None, augment: Literal["ssd", "ssdlite", "light"] = "ssd",
                 **kwargs: Any) -> None:
        super().__init__(root, **kwargs)
        if self.hparams.shards:
            raise ValueError(f"{type(self).__name__} cannot train from shards: detection reads its boxes from COCO annotations")
        if self.hparams.augmentation != Augmentation(hflip=self.hparams.augmentation.hflip):
            raise ValueError(f"{type(self).__name__}: of augmentation, only hflip applies to detection (augment: ssd, "
                             f"ssdlite or light chooses the crops); got {self.hparams.augmentation}")
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self.coco: dict[str, COCO] = {}
        self.image_dirs: dict[str, Path] = {}
        self.sources: dict[str, Path] = {}
        self.category_ids: list[int] = []
        self.class_names: list[str] = []

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_coco(root, **options)

    @property
    def num_classes(self) -> int:
        """Object categories (without SSD's background)."""
        return len(self.category_ids)

    def train_transform(self) -> v2.Transform:
        return ssd_augmentation(self.hparams.augment, self.hparams.augmentation.hflip)

    def eval_transform(self) -> v2.Transform:
        """Original size (the SSD transform resizes, and maps detections back to these coordinates)."""
        return v2.ToDtype(torch.float32, scale=True)

    def unlabeled_dataset(self, records: list) -> Dataset:
        """Unlabeled images for distillation, at their own size (the SSD transform resizes them)."""
        return ImageFolderForDetection(records, self.eval_transform())

    def build_datasets(self) -> dict[str, Dataset]:
        datasets: dict[str, Dataset] = {}
        for stage, split in self.splits.items():
            if split not in self.coco:
                self.coco[split], self.image_dirs[split], self.sources[split] = self.read_split(split)
            coco, path = self.coco[split], self.sources[split]
            if stage == "train":
                self.category_ids = sorted(coco.cats)
                self.class_names = [coco.cats[i]["name"] for i in self.category_ids]
            elif sorted(coco.cats) != self.category_ids:
                raise BadRecordError(f"{path}: categories {sorted(coco.cats)} differ from training's {self.category_ids}")
            label_of = {category: label for label, category in enumerate(self.category_ids, start=1)}
            transform = self.train_transform() if stage == "train" else self.eval_transform()
            datasets[stage] = CocoDetectionDataset(coco, self.image_dirs[split], label_of, transform, path.name)
        if self.skipped:
            log.warning("skip_bad: skipped %d bad records, e.g. %s", len(self.skipped), self.skipped[:3])
        predict = self.predict_records()
        datasets["predict"] = ImageFolderForDetection(predict, self.eval_transform()) if predict else datasets["test"]
        return datasets

    def read_split(self, split: str) -> tuple[COCO, Path, Path]:
        """A split's ground truth as a checked pycocotools ``COCO``, the folder its ``file_name``s are relative
        to, and the annotation file (for messages)."""
        path = self.root / "annotations" / f"instances_{split}.json"
        coco = load_coco(path)
        self.skipped += validate_coco(coco, path, self.root / split, self.hparams.skip_bad)
        return coco, self.root / split, path

    def coco_for(self, stage: str) -> COCO:
        """The ground truth pycocotools object of a stage's split (for COCOeval)."""
        return self.coco[self.splits[stage]]

    def dataset_metrics(self, stage: str, detections: list[dict]) -> dict[str, float]:
        """Metrics of the dataset's own protocol, logged beside COCOeval's (none for COCO)."""
        return {}


class VOCDataModule(CocoDataModule):
    """Pascal VOC (or any dataset in its layout, as LabelImg writes it) for ``DetectionTask``.

    Args:
        root: the ``VOCdevkit`` folder holding ``VOC2007/``, ``VOC2012/`` (or your own year folder).
        train_sets, val_sets, test_sets: ``<year folder>/<image set>`` lists; the SSD paper's VOC setting is
            07+12 trainval (``[VOC2007/trainval, VOC2012/trainval]``) for training and 07 test for evaluation.
            ``test_sets`` defaults to ``val_sets``.
        classes: category names in id order; by default VOC's 20 classes, or, when the training annotations name
            others (your own data in VOC's layout), the names they use in sorted order.
        **kwargs: ``CocoDataModule``'s (augmentation, ``skip_bad``, loaders ...).
    """

    def __init__(self, root: str, train_sets: Sequence[str] = ("VOC2007/trainval",),
                 val_sets: Sequence[str] = ("VOC2007/test",), test_sets: Sequence[str] | None = None,
                 classes: Sequence[str] | None = None, **kwargs: Any) -> None:
        super().__init__(root, train_split="train", val_split="val", test_split="test", **kwargs)
        self.sets = {"train": list(train_sets), "val": list(val_sets), "test": list(test_sets or val_sets)}
        self.classes = list(classes) if classes else None

    def write_synthetic(self, root: Path, **options: Any) -> None:
        write_voc(root, **options)

    def read_split(self, split: str) -> tuple[COCO, Path, Path]:
        """A split's image sets read from their XML files (the sets' first list names the source)."""
        coco, skipped = read_voc(self.root, self.sets[split], self.classes, self.hparams.skip_bad)
        self.classes = [coco.cats[i]["name"] for i in sorted(coco.cats)]  # training's, for the other splits
        year, _, name = self.sets[split][0].partition("/")
        listing = self.root / year / "ImageSets" / "Main" / f"{name}.txt"
        self.skipped += skipped + validate_coco(coco, listing, self.root, self.hparams.skip_bad)  # image files
        return coco, self.root, listing

    def dataset_metrics(self, stage: str, detections: list[dict]) -> dict[str, float]:
        """VOC 2007's 11-point mAP at IoU 0.5 (``voc07_mAP50``), the number VOC papers report."""
        return {"voc07_mAP50": voc07_map50(self.coco_for(stage), detections)}
