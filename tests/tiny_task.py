"""A minimal concrete task and data module, to exercise BaseTask and the CLI before any real task exists."""

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from mobilenets.backbone import BackboneConfig
from mobilenets.tasks.base import BaseTask, Logged, TaskLoss, TaskParts


class BrightnessDataset(Dataset):
    """Label 1 for bright images, 0 for dark ones: learnable in a few steps."""

    def __init__(self, size: int, resolution: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (size,), generator=generator)
        noise = torch.rand(size, 3, resolution, resolution, generator=generator) * 0.5
        self.images = noise + 0.5 * self.labels.view(-1, 1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": self.labels[index]}


class TinyDataModule(pl.LightningDataModule):
    def __init__(self, size: int = 16, resolution: int = 32, batch_size: int = 8) -> None:
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(BrightnessDataset(self.hparams.size, self.hparams.resolution, 0), self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(BrightnessDataset(self.hparams.size, self.hparams.resolution, 1), self.hparams.batch_size)


class TinyModel(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.num_features, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class Tiny(TaskParts):
    def __init__(self, num_classes: int = 2, backbone: BackboneConfig = BackboneConfig(), resolution: int = 32,
                 **kwargs) -> None:
        self.num_classes = num_classes
        super().__init__(backbone=backbone, resolution=resolution, **kwargs)

    def configure_models(self) -> None:
        self.model = TinyModel(self.build_backbone(), self.num_classes)

    def supervised_loss(self, batch: dict) -> TaskLoss:
        logits = self.model(batch["image"])
        return TaskLoss(F.cross_entropy(logits, batch["label"]), logits)

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        return {f"{stage}/loss": Logged(self.supervised_loss(batch).loss, batch_size=len(batch["label"]))}


class TinyTask(Tiny, BaseTask):
    """Tiny as a LightningModule."""
