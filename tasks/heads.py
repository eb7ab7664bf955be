"""Model heads several tasks share (a task never imports another task, so shared heads live here)."""

from __future__ import annotations

from torch import Tensor, nn

from mobilenets.backbone import MobileNetV1

__all__ = ["MobileNetClassifier"]


class MobileNetClassifier(nn.Module):
    """Backbone (no classifier of its own) -> global pool -> dropout -> FC to ``num_classes`` logits.

    Single-label classes (softmax) or independent attributes (sigmoid) alike: the loss decides.
    """

    def __init__(self, backbone: MobileNetV1, num_classes: int, drop_rate: float | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.dropout = nn.Dropout(backbone.drop_rate if drop_rate is None else drop_rate)
        self.head = nn.Linear(backbone.num_features, num_classes)
        nn.init.normal_(self.head.weight, 0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: Tensor) -> Tensor:
        """Logits for normalised images."""
        return self.head(self.dropout(self.backbone(images)))
