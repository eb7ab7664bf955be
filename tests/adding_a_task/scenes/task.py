"""Scenes: what differs from TaskParts, and the task protocol; SceneTask, its LightningModule."""

from typing import Any, Iterable

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from mobilenets.tasks.base import BaseTask, Logged, TaskLoss, TaskParts
from mobilenets.tasks.distillation import SoftTargets, check_same_shape
from mobilenets.tasks.export import score_outputs
from scenes.export import SceneExport
from scenes.model import SceneNet


class Scenes(TaskParts):
    monitor, mode = "val/accuracy", "max"

    def __init__(self, num_classes: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")

    def configure_models(self) -> None:
        self.model = SceneNet(self.build_backbone(), self.hparams.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def supervised_loss(self, batch: dict) -> TaskLoss:
        logits = self.model(batch["image"])
        return TaskLoss(F.cross_entropy(logits, batch["label"]), logits)

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        accuracy = self.val_accuracy if stage == "val" else self.test_accuracy
        accuracy.update(self.model(batch["image"]), batch["label"])
        return {f"{stage}/accuracy": Logged(accuracy)}

    def distillation_criterion(self, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor,
                               temperature: float) -> SoftTargets:
        check_same_shape(student_outputs, teacher_outputs)
        return SoftTargets(temperature)

    def export_module(self) -> SceneExport:
        return SceneExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        return {"accuracy": score_outputs(self.val_accuracy, outputs)["value"]}


class SceneTask(Scenes, BaseTask):
    """Scenes as a LightningModule."""
