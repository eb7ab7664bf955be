"""FaceAttributesTask: multi-label attributes with masked BCE and mean average precision (paper Table 12)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch.nn import functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAveragePrecision,
    MultilabelRecall,
    MultilabelSpecificity,
)

from mobilenets.core.io import write_csv
from mobilenets.tasks.base import BaseTask, Logged, RunContext, TaskLoss, TaskParts
from mobilenets.tasks.distillation import MultilabelTargets, check_same_shape
from mobilenets.tasks.export import score_outputs
from mobilenets.tasks.face_attributes.export import AttributesExport
from mobilenets.tasks.face_attributes.model import MobileNetClassifier

__all__ = ["FaceAttributes", "FaceAttributesTask", "masked_bce"]

UNKNOWN = -1


def masked_bce(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy averaged over the known labels only (targets -1 are unknown)."""
    known = (targets != UNKNOWN).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(
        logits, targets.clamp(min=0).to(logits.dtype), pos_weight=pos_weight, reduction="none"
    )
    return (losses * known).sum() / known.sum().clamp(min=1)


class FaceAttributes(TaskParts):
    """One sigmoid per attribute on the MobileNet backbone.

    Args:
        num_attributes: attributes in the data (40 for CelebA); checked against the data module's, and read
            from it when left out.
        pos_weight: weight each attribute's positives by negatives / positives of the training labels,
            for very imbalanced attributes.
        **kwargs: the shared task arguments, see ``BaseTask``.
    """

    monitor = "val/mAP"
    mode = "max"
    checkpoint_attributes = ("attribute_names",)
    size_arguments = ("num_attributes",)

    def __init__(self, num_attributes: int | None = None, pos_weight: bool = False, **kwargs: Any) -> None:
        if num_attributes is not None and num_attributes < 1:
            raise ValueError(f"num_attributes must be >= 1, got {num_attributes}")
        super().__init__(**kwargs)

    def configure_models(self) -> None:
        num_attributes = self.hparams.num_attributes
        self.model = MobileNetClassifier(self.build_backbone(), num_attributes)
        self.attribute_names = [f"attribute_{i}" for i in range(num_attributes)]
        self.register_buffer("positive_weight", torch.ones(num_attributes), persistent=False)
        self.val_metrics = MetricCollection(
            {"mAP": MultilabelAveragePrecision(num_attributes, average="macro", ignore_index=UNKNOWN)}, prefix="val/"
        )
        self.test_metrics = MetricCollection({
            "mAP": MultilabelAveragePrecision(num_attributes, average="macro", ignore_index=UNKNOWN),
            "AP": MultilabelAveragePrecision(num_attributes, average=None, ignore_index=UNKNOWN),
            "recall": MultilabelRecall(num_attributes, average=None, ignore_index=UNKNOWN),
            "specificity": MultilabelSpecificity(num_attributes, average=None, ignore_index=UNKNOWN),
        }, prefix="test/")

    def sizes_from(self, datamodule: Any) -> dict[str, Any]:
        return {"num_attributes": len(datamodule.attribute_names)}

    def setup_data(self, context: RunContext) -> None:
        """Take attribute names (and, for ``pos_weight``, label balance) from the data; refuse a mismatch."""
        names = self.names_from_data(context.datamodule, "attribute_names", "num_attributes", "attributes")
        if not names:
            return
        self.attribute_names = names
        if self.hparams.pos_weight and context.stage == "fit":
            positives, negatives = context.datamodule.label_counts("train")
            weight = torch.as_tensor(negatives, dtype=torch.float32) / torch.as_tensor(positives).clamp(min=1)
            self.positive_weight.copy_(weight)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def supervised_loss(self, batch: dict) -> TaskLoss:
        logits = self.model(batch["image"])
        pos_weight = self.positive_weight if self.hparams.pos_weight else None
        return TaskLoss(masked_bce(logits, batch["label"], pos_weight), logits)

    def evaluation_step(self, batch: dict, stage: str, dataloader_idx: int = 0) -> dict[str, Logged]:
        """The loss; validation's mAP as a metric Lightning computes at epoch end (test's: ``evaluation_end``)."""
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        loss, logits, _ = self.supervised_loss(batch)
        metrics.update(logits.sigmoid(), batch["label"].long())
        logged = {f"{stage}/loss": Logged(loss, batch_size=len(batch["label"]), sync_dist=True)}
        if stage == "val":
            logged |= {name: Logged(metric, prog_bar=True) for name, metric in metrics.items()}
        return logged

    def evaluation_end(self, stage: str, context: RunContext) -> dict[str, Logged]:
        """test/mAP and test/balanced_accuracy; the per-attribute table written as ``attributes.csv``."""
        if stage != "test":
            return {}
        results = self.test_metrics.compute()
        balanced = (results["test/recall"] + results["test/specificity"]) / 2
        if context.output_dir is not None:
            rows = [
                {"attribute": name, "AP": round(float(ap), 6), "balanced_accuracy": round(float(acc), 6)}
                for name, ap, acc in zip(self.attribute_names, results["test/AP"], balanced)
            ]
            write_csv(context.output_dir / "attributes.csv", rows)
        self.test_metrics.reset()
        return {"test/mAP": Logged(results["test/mAP"]), "test/balanced_accuracy": Logged(balanced.nanmean())}

    def predict(self, batch: dict) -> list[dict[str, Any]]:
        """Per image: the file and every attribute's probability."""
        probabilities = self.model(batch["image"]).sigmoid().tolist()
        return [
            {"file": file, **{name: round(p, 6) for name, p in zip(self.attribute_names, probs)}}
            for file, probs in zip(batch["file"], probabilities)
        ]

    def distillation_criterion(self, student_outputs: torch.Tensor, teacher_outputs: torch.Tensor,
                               temperature: float) -> MultilabelTargets:
        """The paper's attribute distillation: BCE against the teacher's per-attribute probabilities."""
        check_same_shape(student_outputs, teacher_outputs, "attribute logits")
        return MultilabelTargets()

    def export_module(self) -> AttributesExport:
        return AttributesExport(self)

    def evaluate_outputs(self, outputs: Iterable[tuple[dict, tuple[np.ndarray, ...]]], datamodule: Any,
                         stage: str) -> dict[str, float]:
        """Mean AP of the exported probabilities."""
        return score_outputs(self.val_metrics, outputs)


class FaceAttributesTask(FaceAttributes, BaseTask):
    """FaceAttributes as a LightningModule: what ``class_path: FaceAttributesTask`` builds (a distiller's student and a multi-task
    head take ``FaceAttributes``)."""
