"""MultiTaskDataModule: each head's own data module, trained side by side through Lightning's ``CombinedLoader``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import DataLoader

from mobilenets.backbone import check_resolution
from mobilenets.core.errors import SettingError
from mobilenets.tasks.data.datamodule import DEFAULT_RESOLUTION, RebuildableDataModule
from mobilenets.tasks.data.loading import built_part
from mobilenets.tasks.distillation import SemiSupervisedDataModule

__all__ = ["MultiTaskDataModule"]

MODES = ("max_size_cycle", "min_size")


class MultiTaskDataModule(pl.LightningDataModule):
    """One data module per head of a ``MultiTask`` (the same names), each as its task's config gives it.

    A training step takes one batch from every data module (``CombinedLoader``): with ``max_size_cycle`` an epoch
    runs through the largest training set and cycles the others, with ``min_size`` it stops with the smallest.
    Validation and test run every data module's loaders one after another, each scored by its own head.

    Args:
        datamodules: head name -> a task's data module (``class_path``, ``init_args``), or one wrapped in a
            ``SemiSupervisedDataModule`` for a taught head's images without labels; the input size is this
            module's (``resolution``, which the CLI links to the model's), not set per data module.
        resolution: the shared input size.
        mode: ``max_size_cycle`` or ``min_size``, see above.
        num_workers: loader workers of every data module (None: each its own), e.g. 0 to export or debug.
        root: a folder holding each head's data in a folder named after the head (the layout ``mobilenets synth
            multitask`` writes): every data module's ``root`` becomes ``root/<head>`` (None: each its own), so
            that ``--data-root`` of ``mobilenets experiment`` and ``mobilenets export`` moves them all.
    """

    def __init__(self, datamodules: dict[str, RebuildableDataModule], resolution: int = 224,
                 mode: str = "max_size_cycle", num_workers: int | None = None, root: str | None = None) -> None:
        super().__init__()
        check_resolution(resolution)
        if mode not in MODES:
            raise SettingError(f"MultiTaskDataModule mode must be one of {list(MODES)}, got {mode!r}")
        if not datamodules:
            raise SettingError("MultiTaskDataModule needs a data module per head (data.init_args.datamodules)")
        datamodules = {name: built_part(datamodule, RebuildableDataModule) for name, datamodule in datamodules.items()}
        for name, datamodule in datamodules.items():
            if not isinstance(datamodule, RebuildableDataModule):
                raise SettingError(f"MultiTaskDataModule {name!r}: give a task's data module (class_path, "
                                   f"init_args), or one in a SemiSupervisedDataModule, not a "
                                   f"{type(datamodule).__name__}")
            if datamodule.hparams.resolution not in (None, DEFAULT_RESOLUTION):
                raise SettingError(f"MultiTaskDataModule {name!r} sets resolution: every head shares the model's; "
                                   f"set model.init_args.resolution instead")
        self.save_hyperparameters(ignore=["datamodules"])  # recorded below as the specs that rebuild them
        shared = {"resolution": resolution} | ({} if num_workers is None else {"num_workers": num_workers})
        self.datamodules: dict[str, RebuildableDataModule] = {
            name: datamodule.rebuilt(**shared, **({"root": str(Path(root) / name)} if root else {}))
            for name, datamodule in datamodules.items()
        }
        self.hparams["datamodules"] = {name: datamodule.spec(without=("resolution",))
                                       for name, datamodule in self.datamodules.items()}

    @property
    def batch_size(self) -> int:
        """Images per training step: one batch of every data module."""
        return sum(datamodule.batch_size for datamodule in self.datamodules.values())

    def prepare_data(self) -> None:
        for datamodule in self.datamodules.values():
            datamodule.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        for datamodule in self.datamodules.values():
            datamodule.trainer = self.trainer
            datamodule.setup(stage)

    def unaugmented_batches(self, split: str, batches: int, seed: int = 0) -> Iterator[dict[str, Any]]:
        """Every data module's unaugmented batches of ``split`` in turn (the shared body sees them all),
        ``batches`` split between them."""
        each = max(1, batches // len(self.datamodules))
        return itertools.chain.from_iterable(datamodule.unaugmented_batches(split, each, seed)
                                             for datamodule in self.datamodules.values())

    def train_dataloader(self) -> CombinedLoader:
        """A dict of every head's training batch per step; a head taught by a teacher on semi-supervised data
        (distilling) gets a dict of its ``labeled`` and ``unlabeled`` batches."""
        loaders = {name: datamodule.distillation_loaders()
                   if isinstance(datamodule, SemiSupervisedDataModule) and datamodule.distilling
                   else datamodule.train_dataloader() for name, datamodule in self.datamodules.items()}
        return CombinedLoader(loaders, mode=self.hparams.mode)

    def loader_heads(self, stage: str) -> list[tuple[str, int, int]]:
        """For each of ``stage``'s loaders (``val`` or ``test``), in order: its head, its index among that head's
        loaders, and how many loaders that head has (one per test set)."""
        if stage not in ("val", "test"):
            raise SettingError(f"a MultiTask model is evaluated (validate, test), not run on a {stage} split")
        counts = {name: 1 if stage == "val" else len(datamodule.test_names)
                  for name, datamodule in self.datamodules.items()}
        return [(name, index, count) for name, count in counts.items() for index in range(count)]

    def val_dataloader(self) -> list[DataLoader]:
        return [datamodule.val_dataloader() for datamodule in self.datamodules.values()]

    def test_dataloader(self) -> list[DataLoader]:
        loaders = []
        for datamodule in self.datamodules.values():
            own = datamodule.test_dataloader()
            loaders += own if isinstance(own, list) else [own]
        return loaders
