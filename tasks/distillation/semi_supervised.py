"""SemiSupervisedDataModule: a task's data module with training images that have no labels, the data distillation
trains on (the teacher labels them) and an equal-budget labels-only baseline counts its steps by."""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader

from mobilenets.backbone import check_resolution
from mobilenets.core.errors import SettingError
from mobilenets.core.io import read_text
from mobilenets.tasks.data.datamodule import DEFAULT_RESOLUTION, BaseDataModule, RebuildableDataModule
from mobilenets.tasks.data.images import BadRecordError, ImageRecord, image_files
from mobilenets.tasks.data.loading import built_part

__all__ = ["SemiSupervisedDataModule", "batch_parts"]

log = logging.getLogger(__name__)

SOURCES = ("labeled", "unlabeled")


class SemiSupervisedDataModule(RebuildableDataModule):
    """A task's data module (``datamodule``) with a share of its training labels withheld and more images without
    labels added, for distillation (``DistillationTask``, a taught ``MultiTask`` head) and for the labels-only
    baseline that distillation is measured against.

    Trained by a task alone, it yields the labeled images; once distillation switches it on
    (``enable_distillation``), each training batch is ``{"labeled": ..., "unlabeled": ...}``. Validation, test,
    predict and whatever the task reads of its data (classes, names, test sets) are the wrapped data module's.

    Args:
        datamodule: the task's data module (``class_path`` and ``init_args``, as configs give it).
        label_fraction: keep the labels of this seeded share of the training records; the others join the images
            without labels.
        unlabeled: more training images without labels: a folder (any tree) or a CSV file whose ``file`` column
            lists image paths (relative to the CSV's folder or absolute).
        match_distillation_steps: trained alone, loop over the labeled images for as many samples an epoch as
            there are unlabeled ones, so an epoch takes as many optimizer steps as a distiller's (which follows the
            longer loader): the equal-budget labels-only baseline.
        resolution: the input size, which the ``mobilenets`` command links to the model's (None: the wrapped
            data module's).
        batch_size: the wrapped data module's batch size, where given (None: its own).
        num_workers: its loader workers, where given.
        root: its dataset folder, where given (so ``--data-root`` of ``mobilenets experiment`` and ``export``
            moves it).
    """

    def __init__(self, datamodule: BaseDataModule, label_fraction: float = 1.0, unlabeled: str | None = None,
                 match_distillation_steps: bool = False, resolution: int | None = None,
                 batch_size: int | None = None, num_workers: int | None = None, root: str | None = None) -> None:
        super().__init__()
        if resolution is not None:
            check_resolution(resolution)
        if not 0 <= label_fraction <= 1:
            raise SettingError(f"label_fraction must be in [0, 1], got {label_fraction}")
        datamodule = built_part(datamodule, BaseDataModule)
        if not isinstance(datamodule, BaseDataModule):
            raise SettingError(f"SemiSupervisedDataModule wraps a task's data module (class_path, init_args), not a "
                               f"{type(datamodule).__name__}")
        if datamodule.hparams.shards and (label_fraction < 1 or unlabeled):
            raise SettingError("shards stream the training split, so label_fraction and unlabeled (which split a "
                               "listed one) cannot be used with them")
        if resolution is not None and datamodule.hparams.resolution not in (DEFAULT_RESOLUTION, resolution):
            raise SettingError(f"SemiSupervisedDataModule's data module sets resolution {datamodule.hparams.resolution}"
                               f", but the input size is {resolution}: set model.init_args.resolution instead")
        self.save_hyperparameters(ignore=["datamodule"])  # recorded below as the spec that rebuilds it
        self._record_own_settings(inspect.currentframe())
        shared = {"resolution": resolution, "batch_size": batch_size, "num_workers": num_workers, "root": root}
        self.datamodule = datamodule.rebuilt(**{name: value for name, value in shared.items() if value is not None})
        self.datamodule.training_images_optional = bool(unlabeled)
        # the input size, where given, is this module's: a rebuild at another one must not clash with a recorded one
        self.hparams["datamodule"] = self.datamodule.spec(without=("resolution",) if resolution is not None else ())
        self.distilling = False
        self._labels_split = False

    def __getattr__(self, name: str) -> Any:
        """What the task reads of its data (classes, names, test sets, metrics) is the wrapped data module's."""
        wrapped = self.__dict__.get("datamodule")
        if wrapped is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(wrapped, name)

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        self.datamodule.trainer = self.trainer
        self.datamodule.setup(stage)
        if not self._labels_split:
            self._split_labels()
            self._labels_split = True

    def _split_labels(self) -> None:
        """Withhold the labels of all but ``label_fraction`` of the training records, and add ``unlabeled``: the
        wrapped data module's ``unlabeled`` dataset."""
        wrapped, fraction = self.datamodule, self.hparams.label_fraction
        unlabeled = wrapped.located_records(self.unlabeled_records())
        if fraction < 1:
            train = wrapped.datasets["train"]
            order = np.random.default_rng(wrapped.hparams.seed + 1).permutation(len(train))
            n_labeled = int(round(len(order) * fraction))
            wrapped.datasets["train"], dropped = train.split(sorted(order[:n_labeled]))
            unlabeled = dropped + unlabeled
            log.info("label_fraction %.3g: %d labeled and %d unlabeled training images", fraction, n_labeled,
                     len(dropped))
        if unlabeled:
            wrapped.datasets["unlabeled"] = wrapped.unlabeled_dataset(unlabeled)

    def unlabeled_records(self) -> list[ImageRecord]:
        """The images ``unlabeled`` lists (a folder tree or a CSV with a ``file`` column), label -1."""
        source = self.hparams.unlabeled
        if not source:
            return []
        path = Path(source)
        if path.is_dir():
            return [ImageRecord(file, -1, f"{path}[{i}]") for i, file in enumerate(image_files(path))]
        if not path.is_file():
            raise FileNotFoundError(f"unlabeled images not found: {path} (a folder or a CSV file)")
        with io.StringIO(read_text(path), newline="") as handle:
            reader = csv.DictReader(handle)
            if "file" not in (reader.fieldnames or []):
                raise BadRecordError(f"{path}: needs a 'file' column, found {reader.fieldnames}")
            return [ImageRecord(path.parent / row["file"], -1, f"{path.name} line {line}")
                    for line, row in enumerate(reader, start=2)]

    def unaugmented_batches(self, split: str, batches: int, seed: int = 0) -> Iterator[dict[str, Any]]:
        """The wrapped data module's unaugmented batches of ``split``; for ``train``, its images with and without
        labels alike (int8 calibration needs no labels, and a student taught without any has only the latter)."""
        if split != "train":
            return self.datamodule.unaugmented_batches(split, batches, seed)
        self.setup("fit")
        sources = [name for name in ("train", "unlabeled") if len(self.datamodule.datasets.get(name, ()))]
        return itertools.islice(itertools.chain.from_iterable(
            self.datamodule.unaugmented_batches(name, batches, seed) for name in sources), batches)

    def enable_distillation(self, deterministic: bool = False) -> None:
        """Make ``train_dataloader`` yield ``{"labeled": ..., "unlabeled": ...}`` batches (what the distiller
        trains on); ``deterministic`` swaps the training augmentation for the evaluation transform, so that a
        teacher's outputs can be cached."""
        self.distilling = True
        if deterministic:
            for name in ("train", "unlabeled"):
                if name in self.datamodule.datasets:
                    self.datamodule.datasets[name].transform = self.datamodule.eval_transform()

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        """The labeled training loader; when distilling, labeled and unlabeled batches side by side (the shorter
        cycled)."""
        if self.distilling:
            return CombinedLoader(self.distillation_loaders(), mode="max_size_cycle")
        datasets = self.datamodule.datasets
        samples = len(datasets["train"])
        if self.hparams.match_distillation_steps and "unlabeled" in datasets:
            samples = max(samples, len(datasets["unlabeled"]))
        return self.datamodule.training_loader(samples)

    def distillation_loaders(self) -> dict[str, DataLoader]:
        """``labeled`` and ``unlabeled`` training loaders, either absent where there are no such images (a
        multi-task model nests them under its head's name in its own ``CombinedLoader``)."""
        loaders = {}
        if len(self.datamodule.datasets["train"]):
            loaders["labeled"] = self.datamodule.train_dataloader()
        if "unlabeled" in self.datamodule.datasets:
            loaders["unlabeled"] = self.datamodule.loader("unlabeled", shuffle=True)
        if not loaders:
            raise SettingError(f"{type(self.datamodule).__name__}: no training images, labeled or unlabeled")
        return loaders

    def val_dataloader(self) -> DataLoader:
        return self.datamodule.val_dataloader()

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.datamodule.test_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.datamodule.predict_dataloader()


def batch_parts(batch: dict) -> dict[str, dict]:
    """A training batch's ``labeled`` and ``unlabeled`` parts: a distilling ``SemiSupervisedDataModule``'s batch
    as it comes, a task's own data module's batch (every image labeled) as the labeled part."""
    if not any(source in batch for source in SOURCES):
        return {"labeled": batch}
    return {source: batch[source] for source in SOURCES if batch.get(source) is not None}
