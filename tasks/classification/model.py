"""The classifier: the MobileNet backbone, dropout and one FC, as the paper fine-tunes it for Stanford Dogs."""

from __future__ import annotations

from torch import Tensor, nn

from mobilenets.backbone import MobileNetV1
from mobilenets.backbone.profile import PaperRow, ProfileTable, model_rows_table, register_table

__all__ = ["MobileNetClassifier", "TABLE10_ROWS", "table10"]


class MobileNetClassifier(nn.Module):
    """Backbone (no classifier of its own) -> global pool -> dropout -> FC to ``num_classes`` logits."""

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


TABLE10_NOTE = "the paper prints the 1000-class ImageNet model's MACs ({:.1f}M); a 120-class FC has 0.9M fewer"
TABLE10_ROWS = [
    PaperRow("1.0 MobileNet-224", "10", dict(alpha=1.0, num_classes=120), 224, "569", "3.3", TABLE10_NOTE.format(568.7)),
    PaperRow("0.75 MobileNet-224", "10", dict(alpha=0.75, num_classes=120), 224, "325", "1.9"),
    PaperRow("1.0 MobileNet-192", "10", dict(alpha=1.0, num_classes=120), 192, "418", "3.3", TABLE10_NOTE.format(418.1)),
    PaperRow("0.75 MobileNet-192", "10", dict(alpha=0.75, num_classes=120), 192, "239", "1.9"),
]


@register_table("table10")
def table10() -> ProfileTable:
    """Table 10: Stanford Dogs models (120 classes)."""
    return model_rows_table("table10", "Table 10: Stanford Dogs (120 classes)", TABLE10_ROWS)
