"""ClassificationTask: cross-entropy fine-tuning with top-1 / top-5 accuracy (the paper's Table 10 metric)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchvision.transforms import v2

from mobilenets.tasks.base import BaseTask, Logged, RunContext, TaskLoss, TaskParts
from mobilenets.tasks.classification.export import ClassifierExport
from mobilenets.tasks.classification.model import MobileNetClassifier
from mobilenets.tasks.distillation import SoftTargets, check_same_shape
from mobilenets.tasks.export import score_outputs

__all__ = ["Classification", "ClassificationTask"]


class Classification(TaskParts):
    """Single-label image classification on the MobileNet backbone.

    Args:
        num_classes: classes in the data (120 for Stanford Dogs); checked against the data module's, and read
            from it when left out.
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha: mix each training batch with torchvision's ``MixUp`` (with ``cutmix_alpha``: ``CutMix``; the
            Beta(alpha, alpha) mixing weight; 0: off; both set: one of the two per batch, at random). The targets
            become mixed label distributions. Only the task's own training batches are mixed: a distiller trains
            the task on its batches as they are, as the teacher sees them.
        cutmix_alpha: the same for torchvision's ``CutMix``.
        top_k: the second accuracy reported (``top5``) and the classes listed per image by ``predict``.
        **kwargs: the shared task arguments (``backbone``, ``resolution``, optimizer, ...), see ``BaseTask``.
    """

    monitor = "val/top1"
    mode = "max"
    checkpoint_attributes = ("class_names",)
    size_arguments = ("num_classes",)

    def __init__(self, num_classes: int | None = None, label_smoothing: float = 0.0, mixup_alpha: float = 0.0,
                 cutmix_alpha: float = 0.0, top_k: int = 5, **kwargs: Any) -> None:
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0 (0: off), got {mixup_alpha}, {cutmix_alpha}")
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        hp = self.hparams
        self.model = MobileNetClassifier(self.build_backbone(), hp.num_classes)
        mixers = ([v2.MixUp(alpha=hp.mixup_alpha, num_classes=hp.num_classes)] if hp.mixup_alpha else []) + (
            [v2.CutMix(alpha=hp.cutmix_alpha, num_classes=hp.num_classes)] if hp.cutmix_alpha else [])
        self.batch_mix = v2.RandomChoice(mixers) if mixers else None
        self.class_names = [str(index) for index in range(hp.num_classes)]
        k = min(hp.top_k, hp.num_classes)
        metrics = MetricCollection({
            "top1": MulticlassAccuracy(hp.num_classes, top_k=1, average="micro"),
            f"top{k}": MulticlassAccuracy(hp.num_classes, top_k=k, average="micro"),
        })
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def sizes_from(self, datamodule: Any) -> dict[str, Any]:
        return {"num_classes": len(datamodule.class_names)}

    def setup_data(self, context: RunContext) -> None:
        """Take the class names from the data; refuse data with another number of classes."""
        names = self.names_from_data(context.datamodule, "class_names", "num_classes", "classes")
        if names:
            self.class_names = names

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def training_loss(self, batch: dict) -> TaskLoss:
        """The loss on a mixed batch where mixup / cutmix are on (training alone; a distiller or a multi-task model
        trains the task on its batches as they are)."""
        if self.batch_mix is not None:
            images, targets = self.batch_mix(batch["image"], batch["label"])
            batch = {**batch, "image": images, "label": targets}
        return self.supervised_loss(batch)

    def supervised_loss(self, batch: dict) -> TaskLoss:
        """Cross-entropy with class indices, or with label distributions (a mixed batch)."""
        logits = self.model(batch["image"])
        return TaskLoss(F.cross_entropy(logits, batch["label"], label_smoothing=self.hparams.label_smoothing), logits)

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        loss, logits, _ = self.supervised_loss(batch)
        metrics.update(logits, batch["label"])
        return {f"{stage}/loss": Logged(loss, batch_size=len(batch["label"]), sync_dist=True),
                **{name: Logged(metric, prog_bar=stage == "val") for name, metric in metrics.items()}}

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """Per image: the file and the top-k class names with their probabilities."""
        probabilities = self.model(batch["image"]).softmax(dim=1)
        k = min(self.hparams.top_k, self.hparams.num_classes)
        top_probs, top_classes = probabilities.topk(k, dim=1)
        rows = []
        for file, probs, classes in zip(batch["file"], top_probs.tolist(), top_classes.tolist()):
            row: dict[str, Any] = {"file": file}
            for rank, (prob, cls) in enumerate(zip(probs, classes), start=1):
                row[f"class_{rank}"] = self.class_names[cls]
                row[f"prob_{rank}"] = round(prob, 6)
            rows.append(row)
        return rows

    def distillation_criterion(self, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor,
                               temperature: float) -> SoftTargets:
        """Hinton's soft targets over the class logits."""
        check_same_shape(student_outputs, teacher_outputs, "class logits")
        return SoftTargets(temperature)

    def export_module(self) -> ClassifierExport:
        return ClassifierExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """Top-1 / top-k of the exported probabilities (the same ranking as the logits)."""
        return score_outputs(self.val_metrics, outputs)


class ClassificationTask(Classification, BaseTask):
    """Classification as a LightningModule: what ``class_path: ClassificationTask`` builds (a distiller's student and a multi-task
    head take ``Classification``)."""
