"""BaseDataModule: the LightningDataModule base that owns splits, synthetic data, ``skip_bad`` accounting, shards
and loaders for every task (records, decoding and transforms are in ``mobilenets.tasks.data.images``).

Each task's ``data.py`` only reads its dataset's on-disk format into ``ImageRecord`` lists
(``read_splits``) and names its synthetic writer (``write_synthetic``).
"""

from __future__ import annotations

import copy
import inspect
import logging
import shutil
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities.parsing import save_hyperparameters
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler, Sampler, Subset
from torchvision.transforms import v2

from mobilenets.backbone import check_resolution
from mobilenets.core.imports import resolve_class
from mobilenets.tasks.data.augmentation import Augmentation
from mobilenets.tasks.data.images import BadRecordError, ImageDataset, ImageRecord, drop_unreadable, image_files
from mobilenets.tasks.data.shards import ShardedImages

__all__ = ["DEFAULT_RESOLUTION", "BaseDataModule", "RebuildableDataModule"]

log = logging.getLogger(__name__)

#: the input size a data module loads at unless the config (or a composition holding it) sets another
DEFAULT_RESOLUTION = 224


def _resolved(class_path: str) -> Any:
    try:
        return resolve_class(class_path, None)
    except ValueError:  # not importable: not this class
        return None


class RebuildableDataModule(pl.LightningDataModule):
    """A data module that records its arguments as the spec that rebuilds it: what a composition of data modules
    (a multi-task one, a semi-supervised one) holds, rebuilds with shared settings and records in checkpoints."""

    def _record_own_settings(self, frame: types.FrameType | None) -> None:
        """Lightning's CLI gives the module it builds the config it was built from (recorded above); a data module
        built inside another one (a multi-task or semi-supervised data module's) is given the outer one's: it
        records its own arguments instead."""
        recorded = self.hparams.get("_class_path")
        if recorded and _resolved(recorded) is not type(self):
            self.hparams.clear()
            save_hyperparameters(self, frame=frame)

    def spec(self, without: tuple[str, ...] = ()) -> dict[str, Any]:
        """``class_path`` and ``init_args`` that rebuild this data module (as configs give them), ``without`` the
        settings a composition holding it gives it (its input size)."""
        init_args = {name: asdict(value) if is_dataclass(value) else value for name, value in self.hparams.items()
                     if not name.startswith("_") and name not in without}
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    def rebuilt(self, **settings: Any) -> RebuildableDataModule:
        """This data module built anew with ``settings`` in place of its own (a multi-task data module gives its
        data modules its input size, its workers and a root per head); itself where they are its own already."""
        own = {name: value for name, value in self.hparams.items() if not name.startswith("_")}
        if all(own.get(name) == value for name, value in settings.items()):
            return self
        return type(self)(**{**own, **settings})


class BaseDataModule(RebuildableDataModule, ABC):
    """Splits, synthetic data, ``skip_bad`` and loaders for every task.

    Args:
        root: the dataset folder, in the dataset's published layout.
        synthetic: write the task's built-in synthetic dataset into ``root`` first if it is empty.
        synthetic_options: arguments for the task's synthetic writer.
        resolution: input size; the ``mobilenets`` command links it to the model's.
        batch_size: the loaders' batch size.
        num_workers: the loaders' worker processes.
        val_fraction: share of the training records held out for validation where the dataset has no
            validation split of its own (seeded by ``seed``).
        skip_bad: skip, count and log bad records (missing files, malformed entries, unreadable images;
            every image is decoded once at setup to find them) instead of raising.
        predict_dir: images to predict (any folder tree); the test split if not given.
        persistent_workers: keep loader workers alive between epochs (faster); false makes a resumed fit repeat
            an uninterrupted one exactly with ``num_workers > 0`` (``mobilenets.tasks.data.resume``).
        shards: a folder of WebDataset shards written by ``mobilenets shards``: training streams from it
            (``mobilenets.tasks.data.shards``); validation and test still read the files.
        augmentation: the training augmentation and the evaluation crop (flip, crop scale and ratio, an automatic
            policy, random erasing), see ``mobilenets.tasks.data.augmentation``; the defaults are the task's own.

    Training images without labels (distillation's) are added by wrapping a data module in
    ``mobilenets.tasks.distillation.SemiSupervisedDataModule``.
    """

    def __init__(
        self,
        root: str,
        synthetic: bool = False,
        synthetic_options: dict | None = None,
        resolution: int = DEFAULT_RESOLUTION,
        batch_size: int = 32,
        num_workers: int = 2,
        val_fraction: float = 0.1,
        seed: int = 0,
        skip_bad: bool = False,
        predict_dir: str | None = None,
        persistent_workers: bool = True,
        shards: str | None = None,
        augmentation: Augmentation = Augmentation(),
    ) -> None:
        super().__init__()
        check_resolution(resolution)
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self._record_own_settings(inspect.currentframe())
        self.hparams.augmentation = Augmentation.of(augmentation)
        self.root = Path(root)
        self.skipped: list[str] = []
        self.datasets: dict[str, Dataset] = {}
        #: whether a training split with no images is fine (it is where unlabeled images train alone)
        self.training_images_optional = False
        #: the test sets' names, one test loader each (several where the data lists several test files)
        self.test_names: list[str] = ["test"]

    @property
    def batch_size(self) -> int:
        """Labeled images per training step."""
        return self.hparams.batch_size

    @abstractmethod
    def write_synthetic(self, root: Path, **options: Any) -> None:
        """Write the task's synthetic dataset in the real layout."""

    def read_splits(self) -> dict[str, list[ImageRecord] | dict[str, list[ImageRecord]]]:
        """Read the dataset into ``train``, ``val`` and ``test`` records (raising ``BadRecordError`` on bad
        records, or adding their messages to ``self.skipped`` when ``skip_bad``). ``test`` may map several test
        sets' names to their records: each gets its own test loader and metrics (``test/<name>/...``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement read_splits or build_datasets")

    def prepare_data(self) -> None:
        """Write the synthetic dataset once, if asked for and the root is empty (rank 0 only). It is written
        beside the root and renamed into place, so an interrupted write never looks like a finished dataset."""
        if self.hparams.synthetic and not (self.root.exists() and any(self.root.iterdir())):
            log.info("writing synthetic data to %s", self.root)
            partial = self.root.with_name(self.root.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)  # what an interrupted write left
            self.write_synthetic(partial, **(self.hparams.synthetic_options or {}))
            if self.root.exists():
                self.root.rmdir()  # empty, as checked above
            partial.rename(self.root)

    def split_off_validation(self, records: list[ImageRecord]) -> tuple[list[ImageRecord], list[ImageRecord]]:
        """Seeded random (train, val) split by ``val_fraction``."""
        order = np.random.default_rng(self.hparams.seed).permutation(len(records))
        n_val = int(round(len(records) * self.hparams.val_fraction))
        return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]

    #: the task's defaults for ``augmentation``: the smallest crop training takes, the central share evaluation keeps
    train_min_scale: float = 0.25
    eval_crop_fraction: float = 0.875

    def train_transform(self) -> v2.Transform:
        return self.hparams.augmentation.train_transform(self.hparams.resolution, self.train_min_scale)

    def eval_transform(self) -> v2.Transform:
        return self.hparams.augmentation.eval_transform(self.hparams.resolution, self.eval_crop_fraction)

    def test_transform(self) -> v2.Transform:
        """The test split's transform: the evaluation one unless a task tests differently (several crops)."""
        return self.eval_transform()

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = self.build_datasets()
            if self.hparams.shards:
                self.datasets["train"] = self.shard_dataset()

    def shard_label(self, stored: Any) -> Any:
        """The training label of a sample streamed from shards, from the label ``mobilenets shards`` stored
        (as stored, unless a task derives it anew; None leaves the sample out)."""
        return stored

    def shard_dataset(self) -> Dataset:
        """The training split streamed from ``shards`` (``mobilenets.tasks.data.shards``)."""
        return ShardedImages(self.hparams.shards, "train", self.train_transform(), self.shard_label,
                             skip_bad=self.hparams.skip_bad)

    def unlabeled_dataset(self, records: list[ImageRecord]) -> Dataset:
        """A dataset of training images without labels (``records`` labelled -1) for distillation: the training
        augmentation, unless a task loads its images otherwise (detection: at their own sizes)."""
        return ImageDataset(records, self.train_transform())

    def build_datasets(self) -> dict[str, Dataset]:
        """``train``/``val``/``test``/``predict`` datasets of ``ImageRecord``s from ``read_splits``."""
        splits = self.read_splits()
        if isinstance(splits["test"], dict):
            self.test_names = list(splits["test"])
            splits |= {f"test/{name}": records for name, records in splits.pop("test").items()}
        located: dict[int, list[ImageRecord]] = {}  # a list two splits share (validation = test) is located once
        for name, records in splits.items():
            if id(records) not in located:
                located[id(records)] = self.located_records(records)
            splits[name] = located[id(records)]
        if self.hparams.skip_bad:
            for name in list(splits):
                splits[name], skipped = drop_unreadable(splits[name])
                self.skipped += skipped
            if self.skipped:
                log.warning("skip_bad: skipped %d bad records, e.g. %s", len(self.skipped), self.skipped[:3])
        if not splits.get("train") and not self.hparams.shards and not self.training_images_optional:
            skipped = f" (skip_bad skipped {len(self.skipped)} bad records, e.g. {self.skipped[0]})" if self.skipped else ""
            raise BadRecordError(f"{self.root}: no training images found{skipped}; check root and the dataset's lists")
        datasets: dict[str, Dataset] = {
            "train": ImageDataset(splits.get("train", []), self.train_transform()),  # none listed: from shards
            "val": ImageDataset(splits["val"], self.eval_transform()),
        }
        if "test" in splits:
            datasets["test"] = ImageDataset(splits["test"], self.test_transform())
        else:
            datasets |= {f"test/{name}": ImageDataset(splits[f"test/{name}"], self.test_transform())
                         for name in self.test_names}
            datasets["test"] = datasets[f"test/{self.test_names[0]}"]  # figures, export and predict use the first
        predict = self.located_records(self.predict_records())
        datasets["predict"] = ImageDataset(predict, self.eval_transform()) if predict else datasets["test"]
        return datasets

    def located_records(self, records: list[ImageRecord]) -> list[ImageRecord]:
        """The files a split's records are read from: the listed ones, unless a task reads derived files instead
        (the face tasks' ``align: true`` reads cached face crops); bad ones join ``self.skipped`` under
        ``skip_bad``."""
        return records

    def predict_records(self) -> list[ImageRecord]:
        """The images of ``predict_dir`` (any folder tree), label -1; empty without ``predict_dir``."""
        if not self.hparams.predict_dir:
            return []
        files = image_files(self.hparams.predict_dir)
        return [ImageRecord(path, -1, f"predict_dir[{i}]") for i, path in enumerate(files)]

    #: how samples become a batch (detection keeps images and targets as lists)
    collate_fn: Any = None

    def evaluation_sampler(self, dataset: Dataset) -> Sampler | None:
        """Under DDP, each rank's share of an evaluation split without padding: Lightning's default
        ``DistributedSampler`` repeats samples to even out the ranks, and a metric would count them twice."""
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)

    def loader(self, split: str, shuffle: bool = False, samples: int | None = None) -> DataLoader:
        """A loader over ``split``; ``samples``: a shuffled epoch of that many samples, looping over the split
        (RandomSampler draws a new order on each pass)."""
        dataset = self.datasets[split]
        streamed = isinstance(dataset, IterableDataset)  # shards shuffle themselves and split over workers
        epoch = samples or len(dataset)
        if streamed or (shuffle and epoch == len(dataset)):
            sampler = None
        elif shuffle:
            sampler = RandomSampler(dataset, num_samples=epoch)
        else:
            sampler = self.evaluation_sampler(dataset)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle and not streamed and sampler is None,
            sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.persistent_workers and self.hparams.num_workers > 0,
            drop_last=shuffle and epoch > self.hparams.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        return self.training_loader(len(self.datasets["train"]))

    def training_loader(self, samples: int) -> DataLoader:
        """The shuffled loader of the training records, ``samples`` of them an epoch (looping over them where that
        is more: an equal-budget baseline); tasks with their own sampler override this."""
        return self.loader("train", shuffle=True, samples=samples)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        """The test loader, or one per test set (in ``test_names`` order) where there are several."""
        if len(self.test_names) == 1:
            return self.loader("test")
        return [self.loader(f"test/{name}") for name in self.test_names]

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")

    def unaugmented_batches(self, split: str, batches: int, seed: int = 0) -> Iterator[dict[str, Any]]:
        """``batches`` batches of ``split`` in a seeded order under the evaluation transform (no augmentation):
        deterministic images from a split, e.g. the training images deploy calibrates int8 on."""
        self.setup("fit")
        dataset = copy.copy(self.datasets[split])
        dataset.transform = self.eval_transform()
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
        subset = Subset(dataset, order[:batches * self.hparams.batch_size])
        return iter(DataLoader(subset, batch_size=self.hparams.batch_size, collate_fn=self.collate_fn))
